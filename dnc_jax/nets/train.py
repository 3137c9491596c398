"""Training the MLP (alone or as the head of a ResNet-18 / VGG-11 backbone) with optax: MSE
on ``{-1, +1}`` targets (or cross-entropy), Adam, AdamW or SGD with momentum and weight
decay, seeded shuffled minibatches: one jitted scan per epoch for the MLP, one jitted step
per minibatch under a backbone.

Training is a generator of epochs (``train_epochs``) so that a caller can checkpoint after
any epoch and resume: epoch ``e`` shuffles with ``fold_in(key(seed), e)``, so a resumed run
retraces the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dnc_jax import _checks
from dnc_jax.blocks import map_row_blocks
from dnc_jax.labels import as_class_labels, one_hot_pm1
from dnc_jax.nets.analysis import layer_analysis
from dnc_jax.nets.backbones import BACKBONES
from dnc_jax.nets.measurements import EpochRecord
from dnc_jax.nets.mlp import ACTIVATIONS, CLASSIFIER_INITS, INITS
from dnc_jax.nets.network import Network
from dnc_jax.option_fields import option

OPTIMIZERS = ("adam", "adamw", "sgd")


# when the model is measured: TrainConfig.measures
SCHEDULES = ("end", "official")
LOSSES = ("mse", "cross_entropy")
LAST_BATCH = ("drop", "keep")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of ``train_mlp``: by default depth 5, width 512, Xavier gain 0.1,
    Adam, no biases; ``bias``, ``init``, ``classifier_init``, ``input_init`` (``MLP``),
    ``backbone`` (``Network``) and ``last_batch`` (``"drop"`` the ``n % batch_size`` left
    over each epoch, or ``"keep"`` them as a last smaller step, as PyTorch does by
    default). ``optimizer``: ``"adam"`` (weight decay added to the gradient, as
    ``torch.optim.Adam``), ``"adamw"`` (decoupled, as ``torch.optim.AdamW``) or ``"sgd"``.
    ``presets.mlp_preset`` names the paper scripts' configurations."""

    depth: int = option(5, "hidden layers")
    width: int = option(512, "hidden width")
    epochs: int = option(20, "training epochs")
    lr: float = option(1e-4, "learning rate")
    batch_size: int = option(128, "samples per step, reshuffled every epoch")
    optimizer: str = option("adam", "adam and sgd add the weight decay to the gradient (as "
                                    "PyTorch's); adamw decouples it", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(0.0, "weight decay")
    loss: str = option("mse", "training loss", choices=LOSSES)
    init_gain: float = option(0.1, "Xavier gain of the hidden weights")
    activation: str = option("relu", "hidden activation (a key of nets.ACTIVATIONS)",
                             choices=tuple(ACTIVATIONS))
    measure_every: int = option(5, "measure every this many epochs (and after the last)")
    seed: int = option(0, "seeds the initialisation and the batch order")
    bias: bool = option(False, "biases on hidden layers 2..depth")
    classifier_init: str = option("xavier", "the classifier's init (torch: PyTorch's default)",
                                  choices=CLASSIFIER_INITS)
    last_batch: str = option("drop", "the samples left over each epoch (n mod batch_size): "
                                     "drop them, or keep them as a last smaller step (PyTorch's "
                                     "default)", choices=LAST_BATCH)
    init: str = option("xavier_uniform", "hidden weights' Xavier distribution", choices=INITS)
    input_init: str = option("xavier", "the first head layer's init (torch: PyTorch's default)",
                             choices=CLASSIFIER_INITS)
    backbone: str = option("none", "ResNet-18 or VGG-11 features under the MLP head, as the "
                                   "paper's nc_nn.py builds them (dnc_jax/nets/backbones.py)",
                           choices=BACKBONES)
    schedule: str = option("end", "when to measure: after every measure-every-th epoch and "
                                  "the last (end), or as the official scripts, after epochs "
                                  "1, m+1, 2m+1, ... of epochs+1 (official)", choices=SCHEDULES)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def total_epochs(self) -> int:
        """Epochs trained: ``epochs``, or ``epochs + 1`` under the official schedule."""
        return self.epochs + (self.schedule == "official")

    def measures(self, epoch: int) -> bool:
        """Whether the model is measured after ``epoch`` (1-based) epochs: every
        ``measure_every``-th and the last (``"end"``), or, as the official scripts' loop
        ``for i in range(epochs + 1): ... if i % measure_every == 0`` (``"official"``), after
        epochs 1, ``m + 1``, ``2 m + 1``, ... (their plots' 0, ``m``, ``2 m``) and the last."""
        if self.schedule == "official":
            return (epoch - 1) % self.measure_every == 0 or epoch == self.total_epochs
        return epoch % self.measure_every == 0 or epoch == self.total_epochs

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field (run when the configuration is built)."""
        for name in ("depth", "width", "epochs", "batch_size", "measure_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}.")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}.")
        if self.input_init not in CLASSIFIER_INITS:
            raise ValueError(f"input_init must be one of {CLASSIFIER_INITS}; got "
                             f"{self.input_init!r}.")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}; got {self.backbone!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got "
                             f"{self.activation!r}.")
        if self.classifier_init not in CLASSIFIER_INITS:
            raise ValueError(f"classifier_init must be one of {CLASSIFIER_INITS}; got "
                             f"{self.classifier_init!r}.")
        if self.last_batch not in LAST_BATCH:
            raise ValueError(f"last_batch must be one of {LAST_BATCH}; got {self.last_batch!r}.")
        for name in ("momentum", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")
        if not self.init_gain > 0:
            raise ValueError(f"init_gain must be > 0; got {self.init_gain}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """PyTorch's optimisers: Adam and SGD add ``weight_decay * w`` to the gradient
    (``torch.optim.Adam``, ``SGD``); AdamW decays the weights by ``lr * weight_decay``
    apart from the Adam step (``torch.optim.AdamW``; optax's defaults match its betas and
    eps). One object per setting, so that the jitted epoch (static in it) compiles once."""
    return _optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)


@functools.cache
def _optimizer(name: str, lr: float, momentum: float, weight_decay: float):
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    step = optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=momentum or None)
    return optax.chain(optax.add_decayed_weights(weight_decay), step)


def init_model(config: TrainConfig, in_dim: int, num_classes: int,
               image_shape: tuple[int, int, int] | None = None) -> Network:
    """The ``Network`` of ``config``, its initialisers traced into one compiled program
    per architecture, the seed an argument (a backbone's dozens of parameter shapes would
    otherwise compile one by one)."""
    architecture = dict(backbone=config.backbone, image_shape=image_shape, width=config.width,
                        depth=config.depth, init_gain=config.init_gain, init=config.init,
                        activation=config.activation, bias=config.bias,
                        classifier_init=config.classifier_init, input_init=config.input_init)
    return _init_model(in_dim, num_classes, tuple(architecture.items()),
                       jax.random.key(config.seed))


@nnx.jit(static_argnums=(0, 1, 2))
def _init_model(in_dim, num_classes, architecture, key):
    return Network(in_dim, num_classes, rngs=nnx.Rngs(key), **dict(architecture))


def _loss(graphdef, params, rest, X, Y, labels, kind):
    """The loss in training mode, and the batch-norm statistics it updated (``rest``)."""
    model = nnx.merge(graphdef, params, rest, copy=True)  # fresh variables at this trace
    out = model(X, train=True)
    rest = nnx.state(model, nnx.Not(nnx.Param))
    if kind == "mse":
        return jnp.mean((out - Y) ** 2), rest
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, labels)), rest


def _step(graphdef, tx, kind, carry, X, Y, labels, idx):
    """One optimiser step on the rows ``idx``: ``((params, rest, opt_state), loss)``."""
    params, rest, opt_state = carry
    (loss, rest), grads = jax.value_and_grad(_loss, argnums=1, has_aux=True)(
        graphdef, params, rest, X[idx], Y[idx], labels[idx], kind
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), rest, opt_state), loss


def _batches(key, n, batch_size):
    """This epoch's shuffle: ``(n // batch_size, batch_size)`` row indices of the full
    batches and the ``n % batch_size`` left over."""
    num_batches = n // batch_size
    perm = jax.random.permutation(key, n)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size), \
        perm[num_batches * batch_size:]


def _epoch_loss(losses, last, n, batch_size):
    """Mean loss per sample over the steps taken (``last`` the partial batch's or None)."""
    if last is None:
        return jnp.mean(losses)
    return (jnp.sum(losses) * batch_size + last * (n % batch_size)) / n


@functools.partial(jax.jit,
                   static_argnames=("graphdef", "tx", "batch_size", "kind", "keep_last"))
def _epoch(graphdef, tx, params, rest, opt_state, X, Y, labels, key, batch_size, kind,
           keep_last):
    """One pass over shuffled minibatches: ``n // batch_size`` full ones, then (with
    ``keep_last``) one step on the ``n % batch_size`` left over, as PyTorch's DataLoader
    with ``drop_last=False``; otherwise they sit out this epoch. One compiled scan: the
    MLP's steps are too small for per-step dispatch. Returns the carry and the mean loss
    per sample over the steps taken."""
    n = X.shape[0]
    order, rest_rows = _batches(key, n, batch_size)

    def step(carry, idx):
        return _step(graphdef, tx, kind, carry, X, Y, labels, idx)

    carry, losses = jax.lax.scan(step, (params, rest, opt_state), order)
    last = None
    if keep_last and n % batch_size:
        carry, last = step(carry, rest_rows)
    return (*carry, _epoch_loss(losses, last, n, batch_size))


_jit_step = jax.jit(_step, static_argnums=(0, 1, 2))
_jit_batches = jax.jit(_batches, static_argnums=(1, 2))


def _epoch_by_steps(graphdef, tx, params, rest, opt_state, X, Y, labels, key, batch_size,
                    kind, keep_last):
    """``_epoch`` with one compiled step per minibatch, for the convolutional backbones:
    XLA's CPU backend runs a ResNet-18 step several times slower inside a scan's loop than
    alone (BENCHMARKS.md, "Measurements the code's choices rest on")."""
    n = X.shape[0]
    order, rest_rows = _jit_batches(key, n, batch_size)
    carry, losses = (params, rest, opt_state), []
    for idx in order:
        carry, loss = _jit_step(graphdef, tx, kind, carry, X, Y, labels, idx)
        losses.append(loss)
    last = None
    if keep_last and n % batch_size:
        carry, last = _jit_step(graphdef, tx, kind, carry, X, Y, labels, rest_rows)
    return (*carry, _epoch_loss(jnp.stack(losses), last, n, batch_size))


@functools.partial(jax.jit, static_argnames=("graphdef", "batch"))
def _predict(graphdef, params, rest, X, batch=256):
    """Predicted classes in evaluation mode, ``batch`` rows at a time."""
    model = nnx.merge(graphdef, params, rest)
    return map_row_blocks(lambda b: jnp.argmax(model(b), axis=1), X, batch)


@dataclasses.dataclass
class EpochResult:
    """After an epoch: what was measured (``record``: its loss and accuracies, and on
    measurement epochs the head's ``layer_analysis``), the model, and its state leaves
    (``checkpoint``: the arrays to resume from, see ``train_epochs``' ``resume``)."""

    record: EpochRecord
    model: Network
    checkpoint: dict


def _checked_data(x_name: str, X, y_name: str, y) -> tuple[jax.Array, np.ndarray]:
    """``(X float32 (n, d), y int64 (n,))``, or one ``ValueError`` saying what is wrong
    (checked before any training, so that bad data never reaches an SVD or a loss)."""
    X = _checks.as_float_matrix(x_name, X, dtype=jnp.float32)
    _checks.check_finite(x_name, X)
    if y is None:
        raise ValueError(f"{y_name} is missing.")
    y = as_class_labels(y_name, y)
    _checks.check_same_rows(x_name, X, y_name, y)
    return X, y


def train_epochs(
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    config: TrainConfig,
    measure_X: np.ndarray | None = None,
    measure_y: np.ndarray | None = None,
    resume: dict | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> Iterator[EpochResult]:
    """Train epoch by epoch, yielding an ``EpochResult`` after each.

    ``layer_analysis`` runs on the head, at the head's inputs for ``(measure_X,
    measure_y)`` (default the training data), after every ``measure_every``-th epoch and
    after the last. ``resume`` is an earlier ``EpochResult.checkpoint``: training continues
    after that epoch. ``image_shape`` (``(H, W, C)`` of the flattened rows) is needed with
    a ``config.backbone``.
    """
    X, y = _checked_data("X", X, "y", y)
    if (X_test is None) != (y_test is None):
        raise ValueError("Pass both X_test and y_test, or neither.")
    if X_test is not None:
        X_test, y_test = _checked_data("X_test", X_test, "y_test", y_test)
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has {X_test.shape[1]} features but X has {X.shape[1]}.")
    if measure_X is not None:
        measure_X, measure_y = _checked_data("measure_X", measure_X, "measure_y", measure_y)
        if measure_X.shape[1] != X.shape[1]:
            raise ValueError(f"measure_X has {measure_X.shape[1]} features but X has "
                             f"{X.shape[1]}.")
    C = int(y.max()) + 1 if y_test is None else int(max(y.max(), np.max(y_test))) + 1
    Y = jnp.asarray(one_hot_pm1(y, C))
    labels = jnp.asarray(y, jnp.int32)
    if config.batch_size > X.shape[0]:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {X.shape[0]} samples.")
    model = init_model(config, X.shape[1], C, image_shape)
    tx = make_optimizer(config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
    opt_state = tx.init(params)
    first = 0
    if resume is not None:
        treedef = jax.tree.structure((params, rest, opt_state))
        count = len(jax.tree.leaves((params, rest, opt_state)))
        leaves = [jnp.asarray(resume[f"leaf_{i}"]) for i in range(count)]
        params, rest, opt_state = jax.tree.unflatten(treedef, leaves)
        first = int(resume["epoch"])
    measure_X = X if measure_X is None else measure_X
    measure_y = y if measure_y is None else measure_y
    key = jax.random.key(config.seed)
    for epoch in range(first + 1, config.total_epochs + 1):
        # optax's Adam bias correction mixes float and int32 scalars, which a caller's
        # jax_numpy_dtype_promotion="strict" would reject: trace the step under "standard".
        with jax.numpy_dtype_promotion("standard"):
            run_epoch = _epoch if config.backbone == "none" else _epoch_by_steps
            params, rest, opt_state, loss = run_epoch(
                graphdef, tx, params, rest, opt_state, X, Y, labels,
                jax.random.fold_in(key, epoch), config.batch_size, config.loss,
                config.last_batch == "keep")
        model = nnx.merge(graphdef, params, rest)
        measure = config.measures(epoch)
        leaves = jax.tree.leaves((params, rest, opt_state))
        record = EpochRecord(
            epoch=epoch,
            train_loss=float(loss),
            train_accuracy=float(np.mean(np.asarray(_predict(graphdef, params, rest, X)) == y)),
            test_accuracy=None if X_test is None else float(np.mean(
                np.asarray(_predict(graphdef, params, rest, jnp.asarray(X_test, jnp.float32)))
                == np.asarray(y_test))),
            layers=layer_analysis(model, measure_X, measure_y, num_classes=C)
            if measure else None,
        )
        yield EpochResult(
            record=record,
            model=model,
            checkpoint={"epoch": np.asarray(epoch),
                        **{f"leaf_{i}": np.asarray(v) for i, v in enumerate(leaves)}},
        )


def train_mlp(
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    config: TrainConfig = TrainConfig(),
    measure_X: np.ndarray | None = None,
    measure_y: np.ndarray | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[Network, list[EpochRecord]]:
    """Train a ``Network`` (the MLP, or a backbone with the MLP head) on prepared data;
    return it and one record per epoch.

    A shell function (training loop, checkpoints, progress): call it eagerly; its steps
    are jitted inside.

    Each record (``EpochRecord``): ``epoch``, ``train_loss``, ``train_accuracy``,
    ``test_accuracy`` and, on measurement epochs, ``layers`` (``layer_analysis`` of the
    head; ``None`` on the others). See ``TrainConfig`` and ``train_epochs``.
    """
    history: list[EpochRecord] = []
    model = None
    for result in train_epochs(X, y, X_test, y_test, config=config, measure_X=measure_X,
                               measure_y=measure_y, image_shape=image_shape):
        model = result.model
        history.append(result.record)
    assert model is not None  # train_epochs yields at least one epoch (epochs >= 1)
    return model, history
