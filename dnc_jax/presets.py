"""Named configurations: for Deep RFM ``default`` (this library's documented defaults) and
``official`` (the paper's own script); for the MLP ``default``, ``fast``, ``official`` and
``ratio`` (``mlp_preset``, the paper's two network scripts).

``official`` reproduces ``dmbeaglehole/neural_collapse_rfm`` ``deep_rfm.py`` (commit
eee0604, 2024-05-10), which calls ``rfm.LaplaceRFM`` of ``aradha/recursive_feature_machines``
(``rfm/recursive_feature_machine.py`` as of commit 52c7801, 2024-03-23, the version
current when the script was written). Each value and its source line:

- training subset: the first ``n = 500`` samples in the dataset's order (``deep_rfm.py``
  line 28, ``-n`` default; lines 73-85 and 238), sorted by class (lines 242-251);
- test subset: the first 100 test samples (line 239);
- standardisation: per feature, each split with its own mean and std, NaN (zero std) to 0
  (``preprocess``, lines 101-107, applied at lines 271-272);
- targets: one-hot mapped to ``{-1, +1}`` (lines 255-260);
- depth 6 (line 30), Laplace kernel (line 31), bandwidth ``L = 2`` (line 32), width 512
  (line 33) for the ReLU map;
- rows scaled to unit norm at every layer (lines 336-337);
- ridge ``1e-3``: the script passes ``reg=-1`` to ``fit`` (line 353), which that version
  of ``fit`` ignores; the solve uses the constructor's ``reg=1e-3``
  (``recursive_feature_machine.py`` lines 21, 29, 58-63, 82-135);
- one AGOP step (``iters=1``, line 352), the AGOP uncentred (constructor default
  ``centering=False``, line 21) and divided by its largest entry (lines 174-175);
- ``M^(1/2)`` by ``eigh`` with negative eigenvalues set to 0 (``deep_rfm.py`` lines
  120-127);
- ReLU features ``relu(x M^(1/2) W^T)`` with ``W`` PyTorch's default ``nn.Linear`` init,
  uniform on ``(-1/sqrt(d), 1/sqrt(d))``, no bias (lines 135-141, 388);
- the accuracy reported is that of the kernel machine refitted in the learned metric
  (``fit`` refits after its AGOP step and prints the final test accuracy,
  ``recursive_feature_machine.py`` lines 125-130): ``refit_accuracy=True``;
- the random-Fourier-feature variant (``-use_rff``, lines 380-386): width equal to the
  layer's input dimension (``RFF(D=dim)``, line 384), ``sqrt(2/D) cos(x M^(1/2) W^T + b)``
  with i.i.d. Cauchy ``W`` of scale ``gamma`` and ``b ~ U(0, 2 pi)``
  (``rff_laplace.py`` lines 17-37). Cauchy frequencies make these features approximate
  the l1-Laplace kernel ``exp(-gamma ||u - v||_1)`` of the projected inputs ``u = x
  M^(1/2)``. ``gamma``: 0.05 for MNIST and 0.1 for CIFAR-10 / SVHN (the comment on line
  384), otherwise the ``-sigma`` default 0.5 (line 34).

Where this library's defaults differ, the README's table lists it.
"""

from __future__ import annotations

import dataclasses

from dnc_jax.deep_rfm_model import DeepRFMConfig
from dnc_jax.nets.train import TrainConfig

PRESETS = ("default", "official", "paper")
OFFICIAL_RFF_GAMMA = {"mnist": 0.05, "mnist5k": 0.05, "mnist_shifted": 0.05, "cifar10": 0.1,
                      "svhn": 0.1}
OFFICIAL_RFF_GAMMA_DEFAULT = 0.5


@dataclasses.dataclass(frozen=True)
class DeepRFMPreset:
    """A Deep RFM configuration with the data preparation it goes with."""

    name: str
    config: DeepRFMConfig
    n: int | None
    n_test: int | None
    prepare_options: dict
    # the official script it reproduces: its tables print NC1 in that script's convention
    script: str | None = None


def deep_rfm_preset(name: str, dataset: str = "mnist5k", features: str = "relu") -> DeepRFMPreset:
    """The preset ``name`` (``PRESETS``) for ``dataset`` and ``features`` (``"relu"`` or
    ``"cosine"``, the random-Fourier-feature variant).

    ``"paper"``: the settings of the paper's Deep RFM figures. ``gen_deep_rfm_plots.py``
    (same commit) keys the result files it plots to its own argparse defaults, lines 28-35
    (``n = 500``, depth 6, Laplace, ``bw = 2``, width 512, ``sigma = 0.5``), which equal
    ``deep_rfm.py``'s (lines 28-35), and reads seeds 0, 1, 2 (line 69): the ``official``
    configuration, run with ``--seeds 0 1 2``. The paper's appendix was not reachable to
    check against."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}; got {name!r}.")
    if name == "default":
        return DeepRFMPreset(name, DeepRFMConfig(features=features), None, None, {})
    if name == "paper":
        return dataclasses.replace(deep_rfm_preset("official", dataset, features), name=name)
    cosine = features == "cosine"
    config = DeepRFMConfig(
        depth=6, width=None if cosine else 512, kernel="laplace", bandwidth=2.0, reg=1e-3,
        features=features, weights="uniform",
        gamma=OFFICIAL_RFF_GAMMA.get(dataset, OFFICIAL_RFF_GAMMA_DEFAULT) if cosine else 1.0,
        refit_accuracy=True)
    # preprocess: X.std(dim=0), torch's unbiased std (deep_rfm.py line 106): ddof 1
    return DeepRFMPreset(name, config, 500, 100,
                         {"sort_by_class": True, "test_statistics": "own", "ddof": 1},
                         script="deep_rfm.py")


# ------------------------------------------------------------------------ networks

MLP_PRESETS = ("default", "fast", "official", "ratio", "paper")


@dataclasses.dataclass(frozen=True)
class MLPPreset:
    """An MLP training configuration with the data preparation it goes with."""

    name: str
    config: TrainConfig
    n: int | None
    n_test: int | None
    prepare_options: dict
    # the official script it reproduces: its tables print NC1 in that script's convention
    script: str | None = None


def mlp_preset(name: str, backbone: str = "none") -> MLPPreset:
    """``"default"`` (``TrainConfig()``), ``"fast"`` (the quick CPU run measured in the
    README: depth 5, Adam lr 1e-3, 60 epochs, Xavier gain 0.1 everywhere, biases on hidden
    layers 2-5, the partial batch dropped), or ``"official"``: ``nc_nn.py`` of
    ``dmbeaglehole/neural_collapse_rfm`` (commit eee0604):

    - the first ``n = 1000`` training and the first 1,000 test samples (line 22 ``-n``;
      lines 184-185), training sorted by class (lines 194-202), targets ``{-1, +1}``
      (lines 207-211), each split standardised with its own statistics (lines 117-123,
      225-226);
    - depth 3 (line 25), width 512 (line 33), no biases (lines 595, 604, 611), hidden
      weights Xavier-uniform with gain ``init = 1.0`` (lines 29, 591, 600, 609), the
      classifier at PyTorch's default initialisation (line 611, no init call);
    - SGD, lr 0.01, momentum 0, weight decay 0 (lines 26-28, 30, 281), MSE loss (line 62),
      batch 128 reshuffled every epoch with the last partial batch kept (lines 241-242:
      ``DataLoader(shuffle=True)``, ``drop_last`` defaults to False), 1,000 epochs
      (line 24), measured every 25 (line 31) on the script's schedule: its loop
      ``for i in range(num_epochs + 1)`` (line 455) trains 1,001 epochs and measures when
      ``i % 25 == 0`` (line 484), after epochs 1, 26, ..., 1,001 (``schedule="official"``);
    - with ``backbone`` ``"resnet18"`` or ``"vgg11"`` (``-model``, line 32; the networks in
      ``nets/backbones.py``), the head's first layer keeps PyTorch's default
      initialisation (lines 623-627 and 657-661 call no init on it: ``input_init="torch"``),
      and the images are standardised per pixel the same way (lines 217-226).
      The script builds a new optimiser every epoch (line 281), which for its momentum-free
      SGD changes nothing.

    ``"ratio"``: ``nc_nn_ratio.py`` of the same commit:

    - the first ``n = 5000`` training and the first 5,000 test samples (lines 24,
      115-116), training sorted by class (lines 125-134), targets ``{-1, +1}``
      (lines 138-143), pixels in ``[0, 1]`` with no standardisation (lines 78-83, 95-100:
      ``ToTensor`` only, which divides 8-bit pixels by 255: ``input_scale = 1/255``; the
      bias-free ReLU network is 1-homogeneous, so raw 0-255 pixels would scale every
      output and first-layer gradient by 255);
    - depth 6 (line 26), width 512 (line 386), no biases (lines 388, 395, 401), hidden
      weights Xavier-normal with gain 0.1 (lines 391, 399), the classifier at PyTorch's
      default (line 401);
    - AdamW (line 322) with lr 1e-5 (line 310) and PyTorch's default weight decay 0.01,
      betas (0.9, 0.999), eps 1e-8 (optax's ``adamw`` defaults but the decay, set here);
      MSE (line 34); batch 512 reshuffled each epoch, the partial batch kept (lines
      165-166); 2,000 epochs (line 27), measured every 25 (line 308) on the official
      schedule (lines 334, 351: 2,001 epochs, measured after 1, 26, ...). Not reproduced: the
      stop when the training loss falls below 1e-15 (line 341).

    ``"paper"``: the settings of the paper's network figures. ``gen_nn_plots.py`` (same
    commit) reads the results ``nc_nn.py`` writes under a folder named by ``n``, ``lr``,
    ``init``, depth, weight decay and momentum (line 56), taking its own argparse defaults
    (lines 22-33): ``n = 50,000``, CIFAR-10 (``-dataset cifar``), 300 epochs, depth 5,
    weight decay 0, momentum 0, lr 0.05, ``init = 1.0``, SGD, measured every 10, width
    512; and seeds 0, 1, 2 (line 78). So: ``official`` (``nc_nn.py``'s semantics, above)
    with those values; the test split is ``nc_nn.py``'s first ``n`` test samples, i.e. all
    of them (``n_test=None``). Run it with ``--dataset cifar10 --seeds 0 1 2``. The
    paper's appendix was not reachable to check against.
    """
    if name not in MLP_PRESETS:
        raise ValueError(f"preset must be one of {MLP_PRESETS}; got {name!r}.")
    if name == "default":
        return MLPPreset(name, TrainConfig(backbone=backbone), None, None, {})
    if name == "fast":
        return MLPPreset(name, TrainConfig(epochs=60, lr=1e-3, measure_every=20, bias=True,
                                           backbone=backbone), None, None, {})
    if name == "ratio":
        config = TrainConfig(depth=6, width=512, epochs=2000, lr=1e-5, batch_size=512,
                             optimizer="adamw", weight_decay=0.01, loss="mse", init_gain=0.1,
                             init="xavier_normal", measure_every=25, bias=False,
                             classifier_init="torch", last_batch="keep", backbone=backbone,
                             schedule="official")
        return MLPPreset(name, config, 5000, 5000,
                         {"sort_by_class": True, "standardize_features": False,
                          "input_scale": 1.0 / 255.0}, script="nc_nn_ratio.py")
    if name == "paper":
        official = mlp_preset("official", backbone)
        config = dataclasses.replace(official.config, depth=5, epochs=300, lr=0.05,
                                     measure_every=10)
        return dataclasses.replace(official, name=name, config=config, n=50_000, n_test=None)
    config = TrainConfig(depth=3, width=512, epochs=1000, lr=0.01, batch_size=128,
                         optimizer="sgd", momentum=0.0, weight_decay=0.0, loss="mse",
                         init_gain=1.0, measure_every=25, bias=False, classifier_init="torch",
                         last_batch="keep", backbone=backbone,
                         input_init="xavier" if backbone == "none" else "torch",
                         schedule="official")
    # preprocess: X.std(dim=0), torch's unbiased std (nc_nn.py line 122): ddof 1
    return MLPPreset(name, config, 1000, 1000,
                     {"sort_by_class": True, "test_statistics": "own", "ddof": 1},
                     script="nc_nn.py")
