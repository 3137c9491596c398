"""The ``dnc-jax`` command: ``run`` (Deep RFM on the embedded MNIST, the main job),
``deep-rfm``, ``mlp``, ``probe``, ``conv-rfm``, ``grokking`` and ``multi-index``. Bad
arguments give one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import functools
import sys

from dnc_jax.compilation import set_gpu_flags
from dnc_jax.conv_rfm import DeepConvRFMConfig
from dnc_jax.data import DATASETS
from dnc_jax.deep_rfm_model import FEATURES, DeepRFMConfig
from dnc_jax.experiments.cnfa import CNFAConfig
from dnc_jax.followups.grokking import GrokkingConfig
from dnc_jax.followups.multi_index import MultiIndexConfig
from dnc_jax.nets.backbones import BACKBONES
from dnc_jax.nets.train import TrainConfig
from dnc_jax.options import add_flags, from_args
from dnc_jax.presets import (
    MLP_PRESETS,
    PRESETS,
    DeepRFMPreset,
    MLPPreset,
    deep_rfm_preset,
    mlp_preset,
)


class _DefaultsInHelp(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one (not None, not off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if action.option_strings and not any(default is v for v in (None, False, argparse.SUPPRESS)):
            text += f" (default: {action.default})"
        return text


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"dnc-jax: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _dataset(text: str) -> str:
    if text in DATASETS or text.endswith(".npz"):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(DATASETS)}, or a PATH.npz)")


def _output_args(p, command: str) -> None:
    p.add_argument("--out", default=f"runs/{command}", help="output folder")
    p.add_argument("--no-progress", action="store_true")


def _data_args(p, command: str) -> None:
    p.add_argument("--dataset", default="mnist5k", type=_dataset,
                   help="a dataset name, or PATH.npz with X_train, y_train[, X_test, y_test]")
    p.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets download a dataset missing from --data-dir")
    p.add_argument("--n", type=_positive_int, default=None,
                   help="training samples, the first n (all when not given)")
    p.add_argument("--n-test", type=_positive_int, default=None,
                   help="test samples, the first n (all when not given)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    _output_args(p, command)


def _devices(text: str):
    if text == "all":
        return text
    return _positive_int(text)


def _run_args(p) -> None:
    """``run`` / ``deep-rfm``'s options beside the configuration's."""
    p.add_argument("--devices", type=_devices, default=None,
                   help="shard rows over 'all' devices (of every process) or the first k")
    p.add_argument("--distributed", action="store_true",
                   help="join the other processes first (jax.distributed.initialize from the "
                        "cluster launcher's environment)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run once per seed (OUT/seed-K, each resumable) and report mean and "
                        "std per layer (overrides --seed)")
    p.add_argument("--save-model", action="store_true",
                   help="write each layer of the model to OUT/model/ (load_deep_rfm(OUT) "
                        "reads it; about n x width numbers per layer)")
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="official: the paper script's configuration; paper: the settings of "
                        "its figures (dnc_jax/presets.py); other flags still override its values")


def preset_defaults(argv: list[str]):
    """The preset a ``run`` / ``deep-rfm`` (``DeepRFMPreset``) or ``mlp`` (``MLPPreset``)
    command line asks for, or ``None``."""
    if not argv or argv[0] not in ("run", "deep-rfm", "mlp"):
        return None
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
    if known.preset not in PRESETS or known.features not in FEATURES:
        return None  # the full parser reports it
    return deep_rfm_preset(known.preset, known.dataset, known.features)


def build_parser(preset=None) -> argparse.ArgumentParser:
    """The command's parser. Each command's configuration (``DeepRFMConfig``,
    ``TrainConfig``, ``GrokkingConfig``, ``MultiIndexConfig``) gives one flag per field
    (``dnc_jax.options``); ``preset`` (a ``DeepRFMPreset`` or ``MLPPreset``) supplies the
    defaults of its command."""
    parser = _Parser(prog="dnc-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # each option's default in its help, for every subcommand
    sub.add_parser = functools.partial(  # type: ignore[method-assign]
        sub.add_parser, formatter_class=_DefaultsInHelp)
    run = sub.add_parser("run", help="Deep RFM, paper settings, embedded MNIST, depth 10")
    deep = sub.add_parser("deep-rfm", help="Deep RFM on any dataset")
    deep_preset = preset if isinstance(preset, DeepRFMPreset) else None
    for command, p in (("run", run), ("deep-rfm", deep)):
        _data_args(p, command)
        add_flags(p, DeepRFMConfig, deep_preset and deep_preset.config)
        _run_args(p)
        if deep_preset is not None:
            p.set_defaults(n=deep_preset.n, n_test=deep_preset.n_test)
    mlp = sub.add_parser("mlp", help="train an MLP; per-layer collapse and NFA during training")
    mlp_defaults = preset if isinstance(preset, MLPPreset) else None
    _data_args(mlp, "mlp")
    add_flags(mlp, TrainConfig, mlp_defaults and mlp_defaults.config)
    mlp.add_argument("--measure-n", type=_positive_int, default=None,
                     help="training samples used for the layer analysis (default all)")
    mlp.add_argument("--seeds", type=int, nargs="+", default=None,
                     help="train once per seed (OUT/seed-K, each resumable); mean and std per "
                          "measurement and figures with bands (overrides --seed)")
    mlp.add_argument("--preset", choices=MLP_PRESETS, default="default",
                     help="fast: the README's quick CPU run; official: the paper's nc_nn.py; "
                          "ratio: its nc_nn_ratio.py; paper: nc_nn.py with the settings of the "
                          "paper's figures (gen_nn_plots.py; dnc_jax/presets.py); other flags "
                          "still override its values")
    if mlp_defaults is not None:
        mlp.set_defaults(n=mlp_defaults.n, n_test=mlp_defaults.n_test)
    cnfa = sub.add_parser("probe", help="train the official vanilla CNN on digits; per-layer "
                                        "CNFA correlation and collapse at init and trained")
    add_flags(cnfa, CNFAConfig)
    cnfa.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                      help="one network per seed; mean and std over them")
    _output_args(cnfa, "probe")
    conv = sub.add_parser("conv-rfm", help="Deep ConvRFM against the fixed-metric "
                                           "convolutional kernel on embedded images")
    add_flags(conv, DeepConvRFMConfig, skip=("seed",))
    conv.add_argument("--dataset", choices=("mnist5k", "digits"), default="mnist5k")
    conv.add_argument("--n", type=_positive_int, default=1000, help="training images, the first n")
    conv.add_argument("--n-test", type=_positive_int, default=1000, help="test images, the first n")
    conv.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                      help="one run per seed (the AGOP sample, the random filters)")
    _output_args(conv, "conv-rfm")
    fig = sub.add_parser("figures", help="redraw a run's figures (PNG, PDF or SVG)")
    fig.add_argument("kind", choices=("deep-rfm",))
    fig.add_argument("--run", required=True, help="a run folder, or a --seeds folder")
    fig.add_argument("--format", choices=("png", "pdf", "svg"), default="png")
    fig.add_argument("--convention", choices=("dnc_jax", "deep_rfm.py"), default="dnc_jax",
                     help="NC1 as this library defines it, or as the official deep_rfm.py "
                          "(ours / C)")
    grok = sub.add_parser("grokking", help="RFM on modular arithmetic (published settings)")
    add_flags(grok, GrokkingConfig)
    _output_args(grok, "grokking")
    multi = sub.add_parser("multi-index", help="AGOP recovery of a multi-index subspace")
    add_flags(multi, MultiIndexConfig)
    _output_args(multi, "multi-index")
    return parser


def _grokking_command(args) -> None:
    import jax

    from dnc_jax.experiments import grokking_table, run_grokking

    config = from_args(GrokkingConfig, args)
    out = args.out
    with jax.enable_x64(True):  # the published runs are float64
        results = run_grokking(out, config=config, progress=not args.no_progress)
    print(grokking_table(results.iterations))
    print(f"wrote {out}/results.json, {out}/iterations.csv, {out}/grokking.png, "
          f"{out}/agop_heatmaps.png, {out}/agop_fourier.png")


def _multi_index_command(args) -> None:
    from dnc_jax.experiments import multi_index_table, run_multi_index

    config = from_args(MultiIndexConfig, args)
    out = args.out
    results = run_multi_index(out, config=config, sizes=tuple(args.n),
                              progress=not args.no_progress)
    print(multi_index_table(results.sizes))
    print(f"wrote {out}/results.json, {out}/steps.csv, {out}/multi_index.png")


def _probe_command(args) -> None:
    from dnc_jax.experiments.cnfa import cnfa_table, run_cnfa

    config = from_args(CNFAConfig, args)
    out = args.out
    run = run_cnfa(out, config=config, seeds=tuple(args.seeds), progress=not args.no_progress)
    print(cnfa_table(run))
    print(f"wrote {out}/results.json, {out}/cnfa.png")


def _conv_rfm_command(args) -> None:
    from dnc_jax.experiments.conv_rfm import conv_rfm_table, run_conv_rfm

    config = from_args(DeepConvRFMConfig, args)
    out = args.out
    run = run_conv_rfm(out, config=config, dataset=args.dataset, n=args.n, n_test=args.n_test,
                       seeds=tuple(args.seeds), progress=not args.no_progress)
    print(conv_rfm_table(run))
    print(f"wrote {out}/results.json")


def _deep_rfm_command(args) -> None:
    import jax

    from dnc_jax.experiments import deep_rfm_table, run_deep_rfm
    from dnc_jax.experiments.run_figures import deep_rfm_figures
    from dnc_jax.experiments.seeds import run_deep_rfm_seeds, summary_table

    config = from_args(DeepRFMConfig, args)
    preset = deep_rfm_preset(args.preset, args.dataset, args.features)
    out = args.out
    mesh = None
    with jax.enable_x64(args.dtype == "float64"):
        if args.distributed:
            jax.distributed.initialize()
        if args.devices is not None:
            from dnc_jax.sharding import data_mesh

            mesh = data_mesh(args.devices)
        data_options = dict(dataset=args.dataset, n=args.n, n_test=args.n_test,
                            data_dir=args.data_dir, progress=not args.no_progress, mesh=mesh,
                            prepare_options=preset.prepare_options, download=args.download,
                            save_model=args.save_model, script=preset.script)
        if args.seeds is not None:
            summary = run_deep_rfm_seeds(out, tuple(args.seeds), config=config, **data_options)
            print(summary_table(summary, preset.script))
            written = [f"{out}/seed-K/", f"{out}/summary.json", f"{out}/summary.csv"]
        else:
            results = run_deep_rfm(out, config=config, **data_options)
            print(deep_rfm_table(results.layers, preset.script))
            written = [f"{out}/results.json", f"{out}/layers.csv", f"{out}/collapse.png"]
    if jax.process_index() == 0:
        written += deep_rfm_figures(out, script=preset.script)
    print("wrote " + ", ".join(written))


def _figures_command(args) -> None:
    from dnc_jax.experiments.run_figures import deep_rfm_figures

    script = None if args.convention == "dnc_jax" else args.convention
    print("wrote " + ", ".join(deep_rfm_figures(args.run, args.format, script)))


def _mlp_command(args) -> None:
    from dnc_jax.experiments import mlp_table, run_mlp
    from dnc_jax.experiments.mlp_seeds import mlp_summary_table, run_mlp_seeds

    config = from_args(TrainConfig, args)
    preset = mlp_preset(args.preset, args.backbone)
    out = args.out
    options = dict(dataset=args.dataset, n=args.n, n_test=args.n_test, data_dir=args.data_dir,
                   measure_n=args.measure_n, progress=not args.no_progress,
                   download=args.download,
                   prepare_options=preset.prepare_options)
    if args.seeds is not None:
        summary = run_mlp_seeds(out, tuple(args.seeds), config=config, script=preset.script,
                                **options)
        print(mlp_summary_table(summary, preset.script))
        print(f"wrote {out}/seed-K/, {out}/summary.json, {out}/summary.csv, "
              f"{out}/training_seeds.png")
        return
    results = run_mlp(out, config=config, script=preset.script, **options)
    print(mlp_table(results.measurements[-1], preset.script))
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
        elif args.command == "probe":
            _probe_command(args)
        elif args.command == "conv-rfm":
            _conv_rfm_command(args)
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
