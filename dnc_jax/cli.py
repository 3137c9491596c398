"""The ``dnc-jax`` command: ``run`` (Deep RFM on the embedded MNIST, the main job),
``deep-rfm``, ``mlp``, ``grokking`` and ``multi-index``. Bad arguments give one line on
stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys

from dnc_jax.compilation import set_gpu_flags
from dnc_jax.data import DATASETS
from dnc_jax.nets.backbones import BACKBONES
from dnc_jax.nets.mlp import CLASSIFIER_INITS, INITS
from dnc_jax.nets.train import OPTIMIZERS, SCHEDULES
from dnc_jax.presets import MLP_PRESETS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"dnc-jax: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _agop_samples(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _dataset(text: str) -> str:
    if text in DATASETS or text.endswith(".npz"):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(DATASETS)}, or a PATH.npz)")


def _data_args(p, default_n=None):
    p.add_argument("--dataset", default="mnist5k", type=_dataset,
                   help="a dataset name, or PATH.npz with X_train, y_train[, X_test, y_test]")
    p.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets download a dataset missing from --data-dir")
    p.add_argument("--n", type=_positive_int, default=default_n, help="training samples (first n)")
    p.add_argument("--n-test", type=_positive_int, default=None, help="test samples (first n)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/<command>)")
    p.add_argument("--no-progress", action="store_true")


def _devices(text: str):
    if text == "all":
        return text
    return _positive_int(text)


def _scale_args(p):
    p.add_argument("--solver", choices=("auto", "cholesky", "cg", "nystrom"), default="auto",
                   help="kernel solve: auto picks Cholesky on one device up to n=20,000, CG above")
    p.add_argument("--centers", type=_positive_int, default=None,
                   help="Nyström centres (implies --solver nystrom under auto)")
    p.add_argument("--agop-samples", type=_agop_samples, default=None,
                   help="AGOP from this many seeded training rows, or 'auto': doubling "
                        "rounds until it settles (default all)")
    p.add_argument("--tol", type=_positive_float, default=1e-6, help="CG relative residual")
    p.add_argument("--max-iter", type=_positive_int, default=1000, help="CG iteration cap")
    p.add_argument("--precond-rank", type=_positive_int, default=500,
                   help="landmarks of the CG preconditioner")
    p.add_argument("--devices", type=_devices, default=None,
                   help="shard rows over 'all' devices (of every process) or the first k")
    p.add_argument("--distributed", action="store_true",
                   help="join the other processes first (jax.distributed.initialize from the "
                        "cluster launcher's environment)")


def _deep_rfm_args(p, depth):
    p.add_argument("--depth", type=_positive_int, default=depth)
    p.add_argument("--width", type=_positive_int, default=512)
    p.add_argument("--kernel", choices=("laplace", "gaussian"), default="laplace")
    p.add_argument("--bandwidth", type=_positive_float, default=2.0)
    p.add_argument("--reg", type=_nonnegative_float, default=1e-3)
    p.add_argument("--features", choices=("relu", "cosine"), default="relu")
    p.add_argument("--weights", choices=("uniform", "gaussian"), default="uniform")
    p.add_argument("--gamma", type=_positive_float, default=1.0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run once per seed (OUT/seed-K, each resumable) and report mean and "
                        "std per layer (overrides --seed)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float64 layers for depth studies (float32 resolves squared "
                        "distances only to ~1e-7 of the rows' norms)")
    p.add_argument("--save-model", action="store_true",
                   help="write each layer of the model to OUT/model/ (DeepRFM.load(OUT) "
                        "reads it; about n x width numbers per layer)")


def _preset_args(p):
    p.add_argument("--preset", choices=("default", "official"), default="default",
                   help="official: the paper script's configuration (dnc_jax/presets.py); "
                        "other flags still override its values")


def preset_defaults(argv: list[str]):
    """The preset a ``run`` / ``deep-rfm`` (``DeepRFMPreset``) or ``mlp`` (``MLPPreset``)
    command line asks for, or ``None``."""
    if not argv or argv[0] not in ("run", "deep-rfm", "mlp"):
        return None
    from dnc_jax.presets import MLP_PRESETS, PRESETS, deep_rfm_preset, mlp_preset

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default")
    pre.add_argument("--dataset", default="mnist5k")
    pre.add_argument("--features", default="relu")
    pre.add_argument("--backbone", default="none")
    known, _ = pre.parse_known_args(argv[1:])
    if argv[0] == "mlp":
        if known.preset not in MLP_PRESETS or known.backbone not in BACKBONES:
            return None  # the full parser reports it
        return mlp_preset(known.preset, known.backbone)
    if known.preset not in PRESETS:
        return None  # the full parser reports it
    return deep_rfm_preset(known.preset, known.dataset, known.features)


def build_parser(preset=None) -> argparse.ArgumentParser:
    """The command's parser; ``preset`` (a ``DeepRFMPreset``) supplies the defaults of
    ``run`` and ``deep-rfm``."""
    parser = _Parser(prog="dnc-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="Deep RFM, paper settings, embedded MNIST, depth 10")
    deep = sub.add_parser("deep-rfm", help="Deep RFM on any dataset")
    for p in (run, deep):
        _data_args(p)
        _deep_rfm_args(p, depth=10)
        _scale_args(p)
        _preset_args(p)
        if preset is not None and preset.name != "default" and hasattr(preset.config, "kernel"):
            c = preset.config
            p.set_defaults(depth=c.depth, width=c.width, kernel=c.kernel, bandwidth=c.bandwidth,
                           reg=c.reg, gamma=c.gamma, weights=c.weights, n=preset.n,
                           n_test=preset.n_test)
    mlp = sub.add_parser("mlp", help="train an MLP; per-layer collapse and NFA during training")
    _data_args(mlp)
    mlp.add_argument("--depth", type=_positive_int, default=5)
    mlp.add_argument("--width", type=_positive_int, default=512)
    mlp.add_argument("--epochs", type=_positive_int, default=20)
    mlp.add_argument("--lr", type=_positive_float, default=1e-4)
    mlp.add_argument("--batch-size", type=_positive_int, default=128)
    mlp.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                     help="adam and sgd add the weight decay to the gradient (as PyTorch's); "
                          "adamw decouples it")
    mlp.add_argument("--momentum", type=_nonnegative_float, default=0.9)
    mlp.add_argument("--weight-decay", type=_nonnegative_float, default=0.0)
    mlp.add_argument("--loss", choices=("mse", "cross_entropy"), default="mse")
    mlp.add_argument("--init-gain", type=_positive_float, default=0.1)
    mlp.add_argument("--measure-every", type=_positive_int, default=5)
    mlp.add_argument("--measure-n", type=_positive_int, default=None,
                     help="training samples used for the layer analysis (default all)")
    mlp.add_argument("--bias", action="store_true", help="biases on hidden layers 2..depth")
    mlp.add_argument("--init", choices=INITS, default="xavier_uniform",
                     help="hidden weights' Xavier distribution")
    mlp.add_argument("--classifier-init", choices=CLASSIFIER_INITS, default="xavier")
    mlp.add_argument("--input-init", choices=CLASSIFIER_INITS, default="xavier",
                     help="the first head layer's init (torch: PyTorch's default)")
    mlp.add_argument("--last-batch", choices=("drop", "keep"), default="drop",
                     help="the n %% batch-size samples left over each epoch")
    mlp.add_argument("--schedule", choices=SCHEDULES, default="end",
                     help="when to measure: after every --measure-every-th epoch and the last "
                          "(end), or as the official scripts, after epochs 1, m+1, 2m+1, ... "
                          "of epochs+1 (official)")
    mlp.add_argument("--backbone", choices=BACKBONES, default="none",
                     help="ResNet-18 or VGG-11 features under the MLP head, as the paper's "
                          "nc_nn.py builds them (dnc_jax/nets/backbones.py)")
    mlp.add_argument("--seeds", type=int, nargs="+", default=None,
                     help="train once per seed (OUT/seed-K, each resumable); mean and std per "
                          "measurement and figures with bands (overrides --seed)")
    mlp.add_argument("--preset", choices=MLP_PRESETS, default="default",
                     help="fast: the README's quick CPU run; official: the paper's nc_nn.py; "
                          "ratio: its nc_nn_ratio.py (dnc_jax/presets.py); other flags still "
                          "override its values")
    if preset is not None and preset.name != "default" and hasattr(preset.config, "optimizer"):
        c = preset.config
        mlp.set_defaults(**{k: getattr(c, k) for k in (
            "depth", "width", "epochs", "lr", "batch_size", "optimizer", "momentum",
            "weight_decay", "loss", "init_gain", "measure_every", "bias", "classifier_init",
            "last_batch", "init", "input_init", "schedule")}, n=preset.n, n_test=preset.n_test)
    fig = sub.add_parser("figures", help="redraw a run's figures (PNG, PDF or SVG)")
    fig.add_argument("kind", choices=("deep-rfm",))
    fig.add_argument("--run", required=True, help="a run folder, or a --seeds folder")
    fig.add_argument("--format", choices=("png", "pdf", "svg"), default="png")
    grok = sub.add_parser("grokking", help="RFM on modular arithmetic (published settings)")
    grok.add_argument("--p", type=_positive_int, default=61, help="prime modulus")
    grok.add_argument("--op", choices=("+", "-", "*", "/"), default="+")
    grok.add_argument("--train-fraction", type=_positive_float, default=0.5)
    grok.add_argument("--iters", type=_positive_int, default=50)
    grok.add_argument("--bandwidth", type=_positive_float, default=2.5)
    grok.add_argument("--reg", type=_nonnegative_float, default=0.0)
    grok.add_argument("--seed", type=int, default=0, help="seeds the train/test split")
    grok.add_argument("--out", default=None, help="output folder (default runs/grokking)")
    grok.add_argument("--no-progress", action="store_true")
    multi = sub.add_parser("multi-index", help="AGOP recovery of a multi-index subspace")
    multi.add_argument("--d", type=_positive_int, default=200)
    multi.add_argument("--r", type=_positive_int, default=3, help="rank of the hidden U")
    multi.add_argument("--n", type=_positive_int, nargs="+", default=[2000],
                       help="training samples; several values make a sweep")
    multi.add_argument("--n-test", type=_positive_int, default=2000)
    multi.add_argument("--inputs", choices=("hypercube", "gaussian"), default="hypercube")
    multi.add_argument("--noise", type=_nonnegative_float, default=0.1)
    multi.add_argument("--steps", type=_positive_int, default=5, help="RFM (AGOP) steps")
    multi.add_argument("--bandwidth", type=_positive_float, default=10.0)
    multi.add_argument("--reg", type=_nonnegative_float, default=1e-3)
    multi.add_argument("--solver", choices=("auto", "cholesky", "cg", "nystrom"), default="auto")
    multi.add_argument("--centers", type=_positive_int, default=None)
    multi.add_argument("--agop-samples", type=_agop_samples, default=None)
    multi.add_argument("--seed", type=int, default=0)
    multi.add_argument("--out", default=None, help="output folder (default runs/multi-index)")
    multi.add_argument("--no-progress", action="store_true")
    return parser


def _grokking_command(args) -> None:
    import jax

    from dnc_jax.experiments import grokking_table, run_grokking
    from dnc_jax.followups.grokking import GrokkingConfig

    config = GrokkingConfig(p=args.p, op=args.op, train_fraction=args.train_fraction,
                            iters=args.iters, bandwidth=args.bandwidth, reg=args.reg,
                            seed=args.seed)
    config.validate()
    out = args.out or "runs/grokking"
    with jax.enable_x64(True):  # the published runs are float64
        results = run_grokking(out, config=config, progress=not args.no_progress)
    print(grokking_table(results["iterations"]))
    print(f"wrote {out}/results.json, {out}/iterations.csv, {out}/grokking.png, "
          f"{out}/agop_heatmaps.png, {out}/agop_fourier.png")


def _multi_index_command(args) -> None:
    from dnc_jax.experiments import multi_index_table, run_multi_index
    from dnc_jax.followups.multi_index import MultiIndexConfig

    config = MultiIndexConfig(d=args.d, r=args.r, n=args.n[0], n_test=args.n_test,
                              inputs=args.inputs, noise=args.noise, steps=args.steps,
                              bandwidth=args.bandwidth, reg=args.reg, solver=args.solver,
                              centers=args.centers, agop_samples=args.agop_samples,
                              seed=args.seed)
    config.validate()
    out = args.out or "runs/multi-index"
    results = run_multi_index(out, config=config, sizes=tuple(args.n),
                              progress=not args.no_progress)
    print(multi_index_table(results["sizes"]))
    print(f"wrote {out}/results.json, {out}/steps.csv, {out}/multi_index.png")


def _deep_rfm_command(args) -> None:
    import jax

    from dnc_jax.deep_rfm_model import DeepRFMConfig
    from dnc_jax.experiments import deep_rfm_table, run_deep_rfm
    from dnc_jax.experiments.seeds import run_deep_rfm_seeds, summary_table
    from dnc_jax.figures import deep_rfm_figures
    from dnc_jax.presets import deep_rfm_preset

    config = DeepRFMConfig(depth=args.depth, width=args.width, kernel=args.kernel,
                           bandwidth=args.bandwidth, reg=args.reg, features=args.features,
                           gamma=args.gamma, weights=args.weights, seed=args.seed,
                           solver=args.solver, centers=args.centers,
                           agop_samples=args.agop_samples, tol=args.tol, max_iter=args.max_iter,
                           precond_rank=args.precond_rank, dtype=args.dtype,
                           refit_accuracy=args.preset == "official")
    prepare_options = deep_rfm_preset(args.preset, args.dataset, args.features).prepare_options
    out = args.out or f"runs/{args.command}"
    mesh = None
    with jax.enable_x64(args.dtype == "float64"):
        config.validate()
        if args.distributed:
            jax.distributed.initialize()
        if args.devices is not None:
            from dnc_jax.sharding import data_mesh

            mesh = data_mesh(args.devices)
        data_options = dict(dataset=args.dataset, n=args.n, n_test=args.n_test,
                            data_dir=args.data_dir, progress=not args.no_progress, mesh=mesh,
                            prepare_options=prepare_options, download=args.download,
                            save_model=args.save_model)
        if args.seeds is not None:
            summary = run_deep_rfm_seeds(out, tuple(args.seeds), config=config, **data_options)
            print(summary_table(summary))
            written = [f"{out}/seed-K/", f"{out}/summary.json", f"{out}/summary.csv"]
        else:
            results = run_deep_rfm(out, config=config, **data_options)
            print(deep_rfm_table(results["layers"]))
            written = [f"{out}/results.json", f"{out}/layers.csv", f"{out}/collapse.png"]
    if jax.process_index() == 0:
        written += deep_rfm_figures(out)
    print("wrote " + ", ".join(written))


def _figures_command(args) -> None:
    from dnc_jax.figures import deep_rfm_figures

    print("wrote " + ", ".join(deep_rfm_figures(args.run, args.format)))


def _mlp_command(args) -> None:
    from dnc_jax.experiments import mlp_table, run_mlp
    from dnc_jax.experiments.mlp_seeds import mlp_summary_table, run_mlp_seeds
    from dnc_jax.nets.train import TrainConfig
    from dnc_jax.presets import mlp_preset

    config = TrainConfig(depth=args.depth, width=args.width, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, optimizer=args.optimizer,
                         momentum=args.momentum, weight_decay=args.weight_decay, loss=args.loss,
                         init_gain=args.init_gain, measure_every=args.measure_every,
                         seed=args.seed, bias=args.bias, classifier_init=args.classifier_init,
                         last_batch=args.last_batch, init=args.init, input_init=args.input_init,
                         backbone=args.backbone, schedule=args.schedule)
    out = args.out or "runs/mlp"
    options = dict(dataset=args.dataset, n=args.n, n_test=args.n_test, data_dir=args.data_dir,
                   measure_n=args.measure_n, progress=not args.no_progress,
                   download=args.download,
                   prepare_options=mlp_preset(args.preset, args.backbone).prepare_options)
    if args.seeds is not None:
        summary = run_mlp_seeds(out, tuple(args.seeds), config=config, **options)
        print(mlp_summary_table(summary))
        print(f"wrote {out}/seed-K/, {out}/summary.json, {out}/summary.csv, "
              f"{out}/training_seeds.png")
        return
    results = run_mlp(out, config=config, **options)
    print(mlp_table(results["measurements"][-1]))
    print(f"wrote {out}/results.json, {out}/measurements.csv, {out}/training.png")


def main(argv: list[str] | None = None) -> int:
    """The ``dnc-jax`` command: parse ``argv`` (default ``sys.argv[1:]``), run, return the exit
    status (0, or 2 with a one-line message for bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(preset_defaults(argv)).parse_args(argv)
    set_gpu_flags()  # before the first computation starts JAX's backend
    try:
        if args.command in ("run", "deep-rfm"):
            _deep_rfm_command(args)
        elif args.command == "figures":
            _figures_command(args)
        elif args.command == "grokking":
            _grokking_command(args)
        elif args.command == "multi-index":
            _multi_index_command(args)
        else:
            _mlp_command(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"dnc-jax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dnc-jax: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
