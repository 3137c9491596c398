"""A Deep RFM model in files: ``save_deep_rfm`` writes one ``.npz`` (atomically),
``load_deep_rfm`` reads it back, or the per-layer files a run wrote (``model/``).

File I/O is the shell's: the model (``deep_rfm_model.DeepRFM``) is a pytree that knows
nothing of files. Each layer is stored as numpy arrays (``layer_arrays``): centres,
coefficients, ``M^(1/2)``, the random map, the bandwidth, and the kernel's and feature
map's names; the preparation (``Standardization``) under ``preparation/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.deep_rfm_model import DeepRFM, DeepRFMLayer, host_rows
from dnc_jax.kernels import Family, Kernel, family_of, kernel_name
from dnc_jax.predictor import KernelPredictor
from dnc_jax.records import atomic_save_npz, load_npz
from dnc_jax.sharding import Rows
from dnc_jax.standardization import Standardization

MODEL_FOLDER = "model"
PREPARATION = "preparation"  # the saved Standardization's keys: preparation/mean, ...
PREPARATION_FILE = "preparation.npz"  # in a run's model/ folder


def preparation_arrays(preparation: Standardization | None) -> dict[str, np.ndarray]:
    """A ``Standardization`` as numpy arrays (``input_scale``, and ``mean``, ``std`` when it
    standardised); empty for ``None``."""
    if preparation is None:
        return {}
    arrays = {"input_scale": np.asarray(preparation.input_scale)}
    if preparation.mean is not None and preparation.std is not None:
        arrays |= {"mean": np.asarray(preparation.mean), "std": np.asarray(preparation.std)}
    return arrays


def preparation_from_arrays(data: dict) -> Standardization | None:
    """The inverse of ``preparation_arrays`` (``None`` from no arrays)."""
    if "input_scale" not in data:
        return None
    return Standardization(data.get("mean"), data.get("std"), float(data["input_scale"]))


CUSTOM = "custom:"


def layer_file_name(layer: int) -> str:
    """The file of layer ``layer`` in a run's ``model/`` folder."""
    return f"layer-{layer:04d}.npz"


def layer_arrays(spec: DeepRFMLayer) -> dict[str, np.ndarray]:
    """One layer as numpy arrays (gathered from every process when sharded): centres,
    coefficients, ``M^(1/2)``, the random map, the bandwidth and ``meta`` (kernel name,
    feature map name; a custom map as ``"custom:<its name>"``)."""
    p = spec.predictor
    name = spec.features if isinstance(spec.features, str) else \
        CUSTOM + getattr(spec.features, "__name__", "function")
    # sharded centres keep their zero-coefficient padding rows (they add nothing)
    return {"centers": np.asarray(host_rows(Rows(p.centers, p.centers.shape[0]))),
            "coefs": np.asarray(host_rows(Rows(p.coefs, p.coefs.shape[0]))),
            "root": np.asarray(spec.root), "weights": np.asarray(spec.weights),
            "phases": np.asarray(spec.phases), "bandwidth": np.asarray(p.bandwidth),
            "meta": np.array([kernel_name(p.family), name])}


def saved_kernel(name: str, kernel: Family | None) -> Family:
    """The family a saved model names: ``kernel`` when given (it must carry that name),
    else the built-in family of that name; a user family's name alone is refused."""
    if kernel is not None:
        if kernel_name(kernel) != name:
            raise ValueError(f"this model was fitted with the kernel {name!r}; the kernel "
                             f"passed to load is {kernel_name(kernel)!r}.")
        return family_of(kernel)
    try:
        return family_of(name)
    except ValueError:
        raise ValueError(f"this model was fitted with a user kernel ({name!r}), saved by name "
                         "only: pass its family as load(..., kernel=radial_kernel(profile, "
                         f"name={name!r})).") from None


def layer_from_arrays(data: dict, features: Callable | None = None,
                      kernel: Family | None = None) -> DeepRFMLayer:
    """The inverse of ``layer_arrays``; ``features`` replaces a custom map's name,
    ``kernel`` a user kernel's (``saved_kernel``)."""
    saved, name = (str(v) for v in data["meta"])
    kernel = saved_kernel(saved, kernel)
    if name.startswith(CUSTOM):
        if features is None or not callable(features):
            raise ValueError(f"this model was built with a custom feature map "
                             f"({name[len(CUSTOM):]}): pass it as load(..., features=fn).")
        name = features
    pred = KernelPredictor(Kernel(kernel, float(data["bandwidth"])), jnp.asarray(data["centers"]),
                           jnp.asarray(data["coefs"]))
    return DeepRFMLayer(pred, jnp.asarray(data["root"]), jnp.asarray(data["weights"]),
                        jnp.asarray(data["phases"]), name)


def save_deep_rfm(model: DeepRFM, path: str) -> None:
    """Write ``model`` to ``path`` (``.npz``, written atomically), its preparation
    with it. A custom feature map is saved by name only: pass the function again to
    ``load_deep_rfm``. File I/O (a shell function): call it eagerly, not under ``jit``."""
    arrays: dict[str, np.ndarray] = {}
    for l, spec in enumerate(model.layers):
        arrays |= {f"{l}/{k}": v for k, v in layer_arrays(spec).items()}
    arrays |= {f"{PREPARATION}/{k}": v
               for k, v in preparation_arrays(model.preparation).items()}
    atomic_save_npz(path, **arrays)


def load_deep_rfm(path: str, *, features: Callable[[jax.Array], jax.Array] | None = None,
                  kernel: Family | None = None) -> DeepRFM:
    """A model written by ``save_deep_rfm``, or the folder a run wrote with ``save_model``
    (``run_deep_rfm``; ``dnc-jax run --save-model``): its ``model/`` layer files.
    ``features``: the function of a model built with a custom feature map; ``kernel``:
    the family of a model built with a user kernel (``radial_kernel``; a function is
    saved by name only; a registered family, ``register_kernel``, loads by name). The
    model loads onto the loader's default device, whatever devices it was fitted on. File
    I/O (a shell function): call it eagerly, not under ``jit``."""
    folder = os.path.join(path, MODEL_FOLDER) if os.path.isdir(path) else None
    if folder is not None:
        if not os.path.isdir(folder):
            raise ValueError(f"{path} holds no saved model (no {MODEL_FOLDER}/ folder): "
                             "run with save_model (--save-model).")
        files = sorted(f for f in os.listdir(folder) if f.startswith("layer-"))
        preparation = None
        if os.path.exists(os.path.join(folder, PREPARATION_FILE)):
            with load_npz(os.path.join(folder, PREPARATION_FILE), "a model's preparation"
                          ) as data:
                preparation = preparation_from_arrays(dict(data))
        layers = []
        for l, name in enumerate(files):
            if name != layer_file_name(l):
                raise ValueError(f"{folder}: layer {l}'s file is missing (found {name}).")
            with load_npz(os.path.join(folder, name), f"layer {l} of a DeepRFM") as data:
                layers.append(layer_from_arrays(dict(data), features, kernel))
        return DeepRFM(tuple(layers), preparation)
    with load_npz(path, "a DeepRFM model (save_deep_rfm)") as data:
        depth = len({key.split("/")[0] for key in data.files} - {PREPARATION})
        preparation = preparation_from_arrays(
            {k.split("/", 1)[1]: data[k] for k in data.files
             if k.startswith(f"{PREPARATION}/")})
        return DeepRFM(tuple(layer_from_arrays(
            {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{l}/")},
            features, kernel) for l in range(depth)), preparation)
