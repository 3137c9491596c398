"""Deep RFM: a network built layer by layer without backprop (DESIGN.md, Deep RFM).

For each layer ``l``: scale the rows of ``X_l`` to unit norm; fit a Laplace kernel
predictor (``L = 2``, ridge ``1e-3``) on ``(X_l, Y)``, ``Y`` in ``{-1, +1}``; take its AGOP
``M_l`` at the training points divided by its largest entry; measure collapse on ``X_l``,
``X_l M_l^(1/2)`` and ``X_{l+1}``; then ``X_{l+1} = relu(X_l M_l^(1/2) W_l^T)`` with a random
``W_l`` (``width x d``, uniform on ``(-1/sqrt(d), 1/sqrt(d))`` or Gaussian with that std), or
random Fourier features ``sqrt(2/D) cos(X_l M_l^(1/2) Omega + b)`` (Cauchy ``Omega``).
Test data follows the same maps.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from dnc_jax import _checks
from dnc_jax.collapse import CollapseMetrics, collapse_metrics
from dnc_jax.gradient_outer_product import AGOP_BATCH, check_agop_samples, power_from_eigh, psd_eigh
from dnc_jax.kernels import Family, Kernel, family_of, kernel_names
from dnc_jax.labels import as_class_labels, one_hot_pm1
from dnc_jax.layer_records import LayerRecord, PhaseSeconds, Spectrum
from dnc_jax.option_fields import option, parse_agop_samples
from dnc_jax.precision import matmul
from dnc_jax.predictor import KernelPredictor
from dnc_jax.programs import StaticFunction
from dnc_jax.rfm import fit_with_agop_checked
from dnc_jax.rows import Rows, map_rows
from dnc_jax.sharding import as_rows, check_mesh
from dnc_jax.solvers import (
    SolverOptions,
    fit_kernel_ridge,
)
from dnc_jax.standardization import Standardization

FEATURES = ("relu", "cosine")
WEIGHTS = ("uniform", "gaussian")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class DeepRFMConfig(SolverOptions):
    """Hyperparameters of ``deep_rfm`` (the paper's defaults), checked when built (a
    ``ValueError`` names the field). Each field's help is its documentation; the command
    line has one flag per field (``dnc-jax deep-rfm --help``). The kernel solve's options
    are the fields it has from ``SolverOptions`` (``solver``, ``centers``, ``tol``,
    ``max_iter``, ``precond_rank``, ``memory_budget``), declared there."""

    depth: int = option(10, "layers")
    width: int | None = option(512, "random features per layer (None: the layer's input "
                                     "dimension, as the official random-Fourier variant)")
    kernel: str = option("laplace", "each layer's kernel (a name in the registry; in Python "
                                    "also a family from radial_kernel)", choices=kernel_names)
    bandwidth: float = option(2.0, "its bandwidth L")
    reg: float = option(1e-3, "its ridge")
    features: str | Callable[[jax.Array], jax.Array] = option(
        "relu", "the random map: relu, cosine (random Fourier features, Cauchy scale gamma), "
                "or (Python) a function of the pre-activations X M^(1/2) W^T", choices=FEATURES)
    gamma: float = option(1.0, "Cauchy scale of the cosine features")
    weights: str = option("uniform", "distribution of the ReLU map's W", choices=WEIGHTS)
    seed: int = option(0, "seeds every layer's random map (layer l: fold_in(key(seed), l)) "
                          "and any subsampling")
    agop_batch: int = option(AGOP_BATCH, "training rows whose Jacobians are held at once")
    agop_samples: int | str | None = option(
        None, "each layer's AGOP from this many seeded training rows, or 'auto': doubling "
              "rounds from 1,000 rows until the distances it makes move less than 1% "
              "(default all)", parse=parse_agop_samples)
    dtype: str = option("float32", "float64 layers for depth studies (needs 64-bit JAX; "
                                   "float32 resolves squared distances only to ~1e-7 of the "
                                   "rows' norms)", choices=DTYPES)
    refit_accuracy: bool = option(False, "also record the accuracy of a kernel machine "
                                         "refitted on the projected features (the official "
                                         "script's number; one more solve per layer)")

    def solver_options(self) -> SolverOptions:
        """The fields from ``SolverOptions``, as one."""
        return SolverOptions.of(self)

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field (run when the configuration is built)."""
        super().validate()
        check_agop_samples(self.agop_samples)
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1; got {self.depth}.")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be >= 1 (or None: the layer's input dimension); "
                             f"got {self.width}.")
        if self.agop_batch < 1:
            raise ValueError(f"agop_batch must be >= 1; got {self.agop_batch}.")
        if self.reg < 0:
            raise ValueError(f"reg must be >= 0; got {self.reg}.")
        if self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0; got {self.bandwidth}.")
        family_of(self.kernel)  # ValueError for an unknown kernel (any family works here)
        if not callable(self.features) and self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES} or a function "
                             f"(pre-activations -> features); got {self.features!r}.")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}; got {self.weights!r}.")
        if self.features == "cosine" and self.gamma <= 0:
            raise ValueError(f"gamma must be > 0; got {self.gamma}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}; got {self.dtype!r}.")


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["predictor", "root", "weights", "phases"], meta_fields=["features"])
@dataclasses.dataclass(frozen=True)
class DeepRFMLayer:
    """One layer of a fitted Deep RFM: the kernel ``predictor`` fitted on its unit-norm
    inputs, the AGOP's root ``M^(1/2)`` (``(d, d)``), and the random map ``weights``
    ``W`` (``(D, d)``), ``phases`` ``b`` (``(D,)``) of kind ``features`` (a name in
    ``FEATURES`` or a function, see ``random_features``)."""

    predictor: KernelPredictor
    root: jax.Array
    weights: jax.Array
    phases: jax.Array
    features: str | Callable[[jax.Array], jax.Array]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["layers", "preparation"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class DeepRFM:
    """A fitted Deep RFM as a model (a pytree of its layers) that maps new data.

    ``transform(X, l)`` gives the features ``X_l`` that layer ``l`` takes as input
    (``X_0 = X``, ``X_{l+1} = map_l(unit(X_l) M_l^(1/2))``); ``predict(X, l)`` the outputs
    of layer ``l``'s kernel predictor on ``unit(X_l)`` (the record's accuracies). Rows go
    through the run's fixed-size blocks, so the training rows reproduce the run's features
    bit for bit. Which rows it takes is said at each call when the model carries its
    ``preparation`` (the ``Standardization`` of ``prepare``, kept by ``deep_rfm(...,
    preparation=...)`` and by a run's saved model): ``raw=True`` for raw rows, prepared as
    the training rows were, ``raw=False`` for rows already prepared (not saying is a
    ``ValueError``: one reading would be silently wrong); without one, prepared rows. The model is a
    pytree, but ``transform`` and ``predict`` are shell functions (rows placed on a mesh,
    host checks): call them outside ``jit``; the pieces they use (``kernel_matrix``,
    ``KernelPredictor.predict``) compose with the transformations.
    """

    layers: tuple[DeepRFMLayer, ...]
    preparation: Standardization | None = None

    @property
    def depth(self) -> int:
        return len(self.layers)

    @overload
    def transform(self, X: Rows, layer: int | None = None, *,
                  mesh: Mesh | None = None, raw: bool | None = None) -> Rows: ...

    @overload
    def transform(self, X: ArrayLike, layer: int | None = None, *,
                  mesh: Mesh | None = None, raw: bool | None = None) -> jax.Array: ...

    def transform(self, X: ArrayLike | Rows, layer: int | None = None, *,
                  mesh: Mesh | None = None, raw: bool | None = None) -> jax.Array | Rows:
        """Features after ``layer`` maps (default: all of them), ``(m, d) -> (m, d_layer)``."""
        layer = self.depth if layer is None else int(layer)
        if not 0 <= layer <= self.depth:
            raise ValueError(f"layer must be in 0..{self.depth}; got {layer}.")
        rows, mesh = self._rows(X, mesh, raw)
        for spec in self.layers[:layer]:
            unit = _unit_rows_on_mesh(rows.data, mesh)
            rows = Rows(_layer_map(unit, spec.root, spec.weights, spec.phases,
                                   static_features(spec.features),
                                   rows.n, mesh)[1], rows.n)
        return rows if isinstance(X, Rows) else rows.valid()

    @overload
    def predict(self, X: Rows, layer: int = -1, *, mesh: Mesh | None = None,
                raw: bool | None = None) -> Rows: ...

    @overload
    def predict(self, X: ArrayLike, layer: int = -1, *,
                mesh: Mesh | None = None, raw: bool | None = None) -> jax.Array: ...

    def predict(self, X: ArrayLike | Rows, layer: int = -1, *,
                mesh: Mesh | None = None, raw: bool | None = None) -> jax.Array | Rows:
        """Outputs ``(m, C)`` of layer ``layer``'s kernel predictor (default: the last)."""
        if not -self.depth <= layer < self.depth:
            raise ValueError(f"layer must be in -{self.depth}..{self.depth - 1}; got {layer}.")
        layer = range(self.depth)[layer]
        rows, mesh = self._rows(X, mesh, raw)
        features = self.transform(rows, layer, mesh=mesh)
        out = self.layers[layer].predictor.predict(Rows(_unit_rows_on_mesh(features.data, mesh),
                                                        features.n))
        return out if isinstance(X, Rows) else out.valid()

    def _rows(self, X, mesh, raw: bool | None = None):
        if raw is None and self.preparation is not None and not isinstance(X, Rows):
            raise ValueError("this model carries its data preparation: pass raw=True for raw "
                             "rows (prepared as the training rows were) or raw=False for rows "
                             "already prepared.")
        if raw and self.preparation is None:
            raise ValueError("this model has no preparation (deep_rfm(..., preparation=...)): "
                             "pass rows already prepared.")
        if isinstance(X, Rows):
            if raw:
                raise ValueError("Rows are features already on a mesh: pass raw rows as an array.")
            return X, X.mesh
        # default: the mesh the model's centres live on (a model fitted on a mesh predicts
        # there), else one device
        mesh = check_mesh(self.layers[0].predictor.mesh if mesh is None else mesh)
        dtype = self.layers[0].root.dtype
        if raw and self.preparation is not None:  # prepared as the training rows were
            X = self.preparation.apply(np.asarray(X))
        X = _checks.as_float_matrix("X", X, dtype=dtype)
        if X.shape[1] != self.layers[0].root.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features; the model takes "
                             f"{self.layers[0].root.shape[0]}.")
        return as_rows(X, mesh, dtype=dtype), mesh

    def save(self, path: str) -> None:
        """Deprecated: ``dnc_jax.save_deep_rfm(model, path)`` (model files are the shell's)."""
        warnings.warn("DeepRFM.save is deprecated: use dnc_jax.save_deep_rfm(model, path).",
                      DeprecationWarning, stacklevel=2)
        from dnc_jax.deep_rfm_files import save_deep_rfm  # deprecated alias: the shell's function

        save_deep_rfm(self, path)

    @classmethod
    def load(cls, path: str, *, features: Callable[[jax.Array], jax.Array] | None = None,
             kernel: Family | None = None) -> DeepRFM:
        """Deprecated: ``dnc_jax.load_deep_rfm(path, features=..., kernel=...)``."""
        warnings.warn("DeepRFM.load is deprecated: use dnc_jax.load_deep_rfm(path).",
                      DeprecationWarning, stacklevel=2)
        from dnc_jax.deep_rfm_files import load_deep_rfm  # deprecated alias: the shell's function

        return load_deep_rfm(path, features=features, kernel=kernel)


@dataclasses.dataclass
class LayerState:
    """What the next layer needs: its index and the current train/test features
    (numpy arrays, or ``Rows`` on the run's mesh); ``fitted``, the layer just built (not
    checkpointed)."""

    layer: int
    X_train: np.ndarray | Rows
    X_test: np.ndarray | Rows | None
    fitted: DeepRFMLayer | None = None

    def to_host(self) -> dict:
        """The features as numpy arrays (gathered from every process), for a checkpoint."""
        return {"X_train": host_rows(self.X_train), "X_test": host_rows(self.X_test)}


# Rows per block of the layer maps: every row goes through the same block program, so a
# row's features do not depend on the other rows of its batch (blocks.map_row_blocks).
MAP_BLOCK = 512


def unit_rows(X: jax.Array) -> jax.Array:
    """Rows scaled to unit Euclidean norm (zero rows stay zero): ``(b, d) -> (b, d)``."""
    norms = jnp.linalg.norm(X, axis=1, keepdims=True)
    return X / jnp.where(norms > 0, norms, 1.0)


def random_features(P: jax.Array, W: jax.Array, b: jax.Array,
                    features: str | Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``relu(P W^T)``, ``sqrt(2/D) cos(P W^T + b)`` or ``features(P W^T)`` (a function of
    the ``(b, D)`` pre-activations, e.g. ``jnp.tanh``; its ``W`` is drawn as for ReLU) for
    projected rows ``P`` (``(b, d)``)."""
    pre = matmul(P, W.T)
    if callable(features):
        return features(pre)
    if features == "relu":
        return jax.nn.relu(pre)
    return jnp.sqrt(2.0 / W.shape[0]) * jnp.cos(pre + b[None, :])


_unit_rows = jax.jit(unit_rows)


def static_features(features: str | Callable) -> str | StaticFunction:
    """A feature map as ``_layer_map``'s static argument: a name as it is; a user's
    function compared by the program it traces to (``programs.StaticFunction``), never by
    its identity (a closure over a changed number would keep its first program)."""
    if isinstance(features, str):
        return features
    return StaticFunction(features, jax.ShapeDtypeStruct((2, 3), jnp.float32))


@functools.partial(jax.jit, static_argnames=("mesh",))
def _unit_rows_on_mesh(X: jax.Array, mesh: Mesh) -> jax.Array:
    """``unit_rows`` of row-sharded ``X``, in blocks of ``MAP_BLOCK`` rows on each device."""
    return map_rows(unit_rows, X, mesh, MAP_BLOCK)


@functools.partial(jax.jit, static_argnames=("features", "n", "mesh"))
def _layer_map(X: jax.Array, root: jax.Array, W: jax.Array, b: jax.Array, features: str | StaticFunction,
               n: int, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """``(X M^(1/2), random_features(X M^(1/2)))`` of row-sharded ``X`` (``root`` is
    ``M^(1/2)``), in blocks of ``MAP_BLOCK`` rows; rows past the first ``n`` (padding) of
    the features stay zero."""
    def block(Xb, root, W, b):
        P = matmul(Xb, root)
        return P, random_features(P, W, b, features)

    projected, out = map_rows(block, X, mesh, MAP_BLOCK, root, W, b)
    return projected, jnp.where((jnp.arange(X.shape[0]) < n)[:, None], out, 0.0)


@jax.jit
def _hits(pred: jax.Array, y: jax.Array, n: jax.Array) -> jax.Array:
    """Correct argmax predictions among the first ``n`` rows (the others are padding)."""
    real = jnp.arange(pred.shape[0]) < n
    return jnp.sum((jnp.argmax(pred, axis=1).astype(y.dtype) == y) & real)


def host_rows(X) -> np.ndarray | None:
    """A numpy copy of features given as numpy, a JAX array or ``Rows`` (in a multi-process
    run, gathered from every process)."""
    if X is None or isinstance(X, np.ndarray):
        return X
    if isinstance(X, Rows):
        if not X.data.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(X.data, tiled=True))[: X.n]
        return np.asarray(X.data)[: X.n]
    return np.asarray(X)


def random_weights(key: jax.Array, d: int, config: DeepRFMConfig) -> tuple[jax.Array, jax.Array]:
    """The layer's random ``W`` (``width x d``) and phase ``b`` (``(width,)``), drawn in
    float32 and cast to ``config.dtype``, so that a float64 run uses the same maps."""
    k_w, k_b = jax.random.split(key)
    D, f32 = config.width or d, jnp.float32
    if config.features == "cosine":
        W = jax.random.cauchy(k_w, (D, d), f32) * config.gamma
        b = jax.random.uniform(k_b, (D,), f32, maxval=2.0 * np.pi)
    else:
        bound = 1.0 / np.sqrt(d)
        if config.weights == "uniform":
            W = jax.random.uniform(k_w, (D, d), f32, minval=-bound, maxval=bound)
        else:
            W = jax.random.normal(k_w, (D, d), f32) * bound
        b = jnp.zeros((D,), f32)
    return W.astype(config.dtype), b.astype(config.dtype)


def _accuracy(pred: Rows, y: Rows) -> float:
    return int(_hits(pred.data, y.data, pred.n)) / pred.n


def _refit_accuracies(projected, Y, y_rows, Xt, root, yt_rows, config,
                      mesh) -> tuple[float, float | None]:
    """Train and test accuracy (``None`` without test labels) of the kernel predictor
    refitted on the projected features ``X M^(1/2)`` (the kernel in metric ``M``), as the
    official code reports them (``model.fit(iters=1)`` refits after its AGOP step). ``Xt``
    is the test data already scaled to unit rows."""
    predictor, _ = fit_kernel_ridge(projected, Y, kernel=config.kernel,
                                    bandwidth=config.bandwidth, reg=config.reg, mesh=mesh,
                                    seed=config.seed, **dataclasses.asdict(config.solver_options()))
    test = None
    if Xt is not None and yt_rows is not None:
        test = _accuracy(predictor.predict(Xt, transform=root), yt_rows)
    return _accuracy(predictor.predict(projected), y_rows), test


def deep_rfm_layers(
    X_train: ArrayLike | Rows,
    y_train: ArrayLike,
    X_test: ArrayLike | Rows | None = None,
    y_test: ArrayLike | None = None,
    *,
    config: DeepRFMConfig,
    start: LayerState | None = None,
    num_classes: int | None = None,
    mesh: Mesh | None = None,
) -> Iterator[tuple[LayerRecord, LayerState]]:
    """Run Deep RFM one layer at a time, yielding ``(record, state after the layer)``.

    ``start`` resumes from a saved ``LayerState``: since layer ``l``'s random map depends
    only on ``(seed, l)``, a resumed run equals an uninterrupted one. Arguments as in
    ``deep_rfm``; the states hold ``Rows`` on ``mesh`` (one device when ``None``).
    """
    if config.dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError("dtype='float64' needs 64-bit JAX: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    dtype = jnp.dtype(config.dtype)
    mesh = check_mesh(mesh)
    y_train = as_class_labels("y_train", y_train)
    C = int(num_classes or y_train.max() + 1)
    if y_train.max() >= C:
        raise ValueError(f"y_train holds label {int(y_train.max())} but num_classes is {C}.")
    if start is None:
        X, Xt, first = X_train, X_test, 0
    else:
        X, Xt, first = start.X_train, start.X_test, start.layer
    if not isinstance(X, Rows):
        X = _checks.as_float_matrix("X_train", X, dtype=dtype)
    _checks.check_same_rows("X_train", X, "y_train", y_train)
    if Xt is not None and not isinstance(Xt, Rows):
        Xt = _checks.as_float_matrix("X_test", Xt, dtype=dtype)
    if Xt is not None and Xt.shape[1] != X.shape[1]:
        raise ValueError("X_test and X_train must have the same number of features.")
    if y_test is not None:
        if Xt is None:
            raise ValueError("y_test was given without X_test.")
        y_test = as_class_labels("y_test", y_test)
        if y_test.size and y_test.max() >= C:
            raise ValueError(f"y_test holds label {int(y_test.max())} but there are {C} classes.")
        _checks.check_same_rows("X_test", Xt, "y_test", y_test)
    X = as_rows(X, mesh, dtype=dtype)
    Xt = None if Xt is None else as_rows(Xt, mesh, dtype=dtype)
    # the one check of the rows (padding rows are zeros), before any work: every layer
    # below trusts them and the features it makes from them
    _checks.check_finite("X_train", X.data)
    if Xt is not None:
        _checks.check_finite("X_test", Xt.data)
    Y = as_rows(one_hot_pm1(y_train, C), mesh, dtype=dtype)
    # padding rows get label -1: no class in the collapse sums
    y_rows = as_rows(y_train.astype(np.int32), mesh, fill=-1)
    yt_rows = None if y_test is None else as_rows(y_test.astype(np.int32), mesh)
    key = jax.random.key(config.seed)
    options = config.solver_options()
    kernel = Kernel(config.kernel, float(config.bandwidth))  # checked with the configuration

    n_train = X.n

    def metrics(H: jax.Array) -> CollapseMetrics:
        return collapse_metrics(Rows(H, n_train), y_rows, num_classes=C)

    for layer in range(first, config.depth):
        tic = time.perf_counter()
        X = Rows(_unit_rows_on_mesh(X.data, mesh), X.n)
        predictor, M, info = fit_with_agop_checked(
            X, Y, kernel, config.reg, batch_size=config.agop_batch, normalize="max",
            solver=options, agop_samples=config.agop_samples, seed=config.seed + layer,
            mesh=mesh)
        M.block_until_ready()  # dispatch is asynchronous: charge the AGOP to its own phase
        fit_seconds = time.perf_counter() - tic
        evals, evecs = psd_eigh(M)
        root = jnp.asarray(power_from_eigh(evals, evecs, 0.5), dtype)
        W, b = random_weights(jax.random.fold_in(key, layer), X.shape[1], config)
        features = static_features(config.features)
        projected, X_next = _layer_map(X.data, root, W, b, features, X.n, mesh)
        X_next.block_until_ready()
        if callable(config.features) and not bool(jnp.isfinite(X_next).all()):
            name = getattr(config.features, "__name__", "function")
            raise ValueError(f"the custom feature map {name} made NaN or infinite features "
                             f"at layer {layer} (from finite inputs).")
        tic_metrics = time.perf_counter()
        map_seconds = tic_metrics - tic - fit_seconds
        collapse = metrics(X.data), metrics(projected), metrics(X_next)
        metric_seconds = time.perf_counter() - tic_metrics
        tic_predict = time.perf_counter()
        train_accuracy = _accuracy(predictor.predict(X), y_rows)
        test_accuracy = None
        Xt = None if Xt is None else Rows(_unit_rows_on_mesh(Xt.data, mesh), Xt.n)
        if Xt is not None and yt_rows is not None:
            test_accuracy = _accuracy(predictor.predict(Xt), yt_rows)
        predict_seconds = time.perf_counter() - tic_predict
        refit: tuple[float | None, float | None] = (None, None)
        if config.refit_accuracy:
            refit = _refit_accuracies(Rows(projected, X.n), Y, y_rows, Xt, root, yt_rows,
                                      config, mesh)
        if Xt is not None:
            Xt = Rows(_layer_map(Xt.data, root, W, b, features, Xt.n, mesh)[1], Xt.n)
        input_dim = int(X.shape[1])
        X = Rows(X_next, X.n)
        seconds = time.perf_counter() - tic
        phases = PhaseSeconds(kernel=info.kernel_seconds, solve=info.solve_seconds,
                              agop=fit_seconds - info.kernel_seconds - info.solve_seconds,
                              map=map_seconds, metrics=metric_seconds, predict=predict_seconds)
        record = LayerRecord(layer, input_dim, *collapse, train_accuracy, test_accuracy,
                             Spectrum.of(evals), info, seconds, phases, *refit)
        fitted = DeepRFMLayer(predictor, root, W, b, config.features)
        yield record, LayerState(layer + 1, X, Xt, fitted)


def deep_rfm(
    X_train: ArrayLike,
    y_train: ArrayLike,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    *,
    config: DeepRFMConfig | None = None,
    mesh: Mesh | None = None,
    num_classes: int | None = None,
    on_layer: Callable[[LayerRecord], None] | None = None,
    return_model: bool = False,
    preparation: Standardization | None = None,
    **options: Any,
) -> list[LayerRecord] | tuple[list[LayerRecord], DeepRFM]:
    """Deep RFM on prepared data (see the module docstring; ``prepare`` does the paper's
    standardisation and subsampling).

    Args:
      X_train: ``(n, d)`` features; y_train: ``(n,)`` integer labels.
      X_test: optional held-out features, mapped through the same layers.
      y_test: their labels.
      config: the hyperparameters (``DeepRFMConfig``; default ``DeepRFMConfig()``).
      **options: fields of ``DeepRFMConfig`` replacing the config's
        (``deep_rfm(X, y, depth=3, dtype="float64")``).
      mesh: shard the rows over this mesh's ``"data"`` axis (``data_mesh("all")``).
      on_layer: called with each layer's record as it completes.
      return_model: also return the fitted ``DeepRFM`` (it holds each layer's kernel
        predictor, whose centres are that layer's training features).
      preparation: ``prepare(...).standardization``: kept with the model, whose
        ``transform`` and ``predict`` then take raw rows (saved and loaded with it).

    Returns:
      One ``LayerRecord`` per layer: ``layer``, ``input_dim``, ``CollapseMetrics`` at
      ``input`` (``X_l``), ``projected`` (``X_l M^(1/2)``), ``output`` (``X_{l+1}``);
      ``train_accuracy``, ``test_accuracy`` (of the layer's kernel predictor, fitted on
      ``X_l``, before the projection); ``agop`` (its ``Spectrum``); ``solve``
      (``SolveInfo``); ``seconds`` and ``phase_seconds`` (kernel, solve, AGOP; ``map``: the
      AGOP's root, projection and random map; ``metrics``; ``predict``: the train and test
      accuracies). ``record.to_json()`` is its form in ``results.json``.
    """
    config = dataclasses.replace(config or DeepRFMConfig(), **options)
    records: list[LayerRecord] = []
    layers: list[DeepRFMLayer] = []
    for record, state in deep_rfm_layers(X_train, y_train, X_test, y_test, config=config,
                                         num_classes=num_classes, mesh=mesh):
        records.append(record)
        if return_model and state.fitted is not None:
            layers.append(state.fitted)
        if on_layer is not None:
            on_layer(record)
    return (records, DeepRFM(tuple(layers), preparation)) if return_model else records
