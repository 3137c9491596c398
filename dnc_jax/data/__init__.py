"""Datasets: embedded MNIST and digits, tensorflow-datasets loaders, synthetic tasks, and
the paper's data preparation.

``load_dataset`` returns numpy ``(X, y)``: ``X`` float32 ``(n, d)`` (images flattened, raw
pixel values), ``y`` int64 labels in ``0..C-1``. ``prepare`` then applies the Deep RFM
paper's preparation: the first ``n`` samples (or a class-balanced subsample), per-feature
standardisation with training statistics, ``{-1, +1}`` one-hot targets.
``load_dataset_rows`` reads or builds only some rows of a split (one process's share in a
run of several; ``process_data``).

Modules: ``preparation`` (``prepare``), ``embedded``, ``augmented`` (``mnist_shifted``),
``tfds_reader``, ``npz``, ``synthetic``, ``loading`` (``load_dataset``); this package
re-exports their public names, and those of the core's ``labels`` and ``standardization``
and of the follow-ups' tasks (``followups.modular_task``, ``followups.multi_index_task``).
"""

from dnc_jax.data.augmented import (
    mnist_shifted,
    mnist_shifted_size,
    shift_image,
)
from dnc_jax.data.embedded import (
    mnist5k_path,
)
from dnc_jax.data.loading import (
    AUGMENTED,
    DATASETS,
    EIGHT_BIT_IMAGES,
    EMBEDDED,
    SPLITS,
    SYNTHETIC,
    data_source,
    load_dataset,
    load_dataset_rows,
)
from dnc_jax.data.npz import (
    has_test_split,
    is_npz_path,
)
from dnc_jax.data.preparation import (
    TEST_STATISTICS,
    PreparedData,
    balanced_indices,
    check_test_statistics,
    feature_statistics,
    prepare,
    standardize,
)
from dnc_jax.data.synthetic import (
    gaussian_mixture,
    multi_index,
)
from dnc_jax.data.tfds_reader import (
    TFDS,
    DatasetNotPreparedError,
)
from dnc_jax.followups.modular_task import (
    MODULAR_OPS,
    modular_arithmetic,
    pow_mod_inverse,
)
from dnc_jax.followups.multi_index_task import (
    MULTI_INDEX_INPUTS,
    MULTI_INDEX_SUBSPACES,
    MULTI_INDEX_TARGETS,
    coherence,
    multi_index_regression,
    multi_index_target,
)
from dnc_jax.labels import (
    as_class_labels,
    one_hot_pm1,
)
from dnc_jax.standardization import (
    Standardization,
    apply_standardization,
)

__all__ = [
    "AUGMENTED",
    "DATASETS",
    "EIGHT_BIT_IMAGES",
    "EMBEDDED",
    "MODULAR_OPS",
    "MULTI_INDEX_INPUTS",
    "MULTI_INDEX_SUBSPACES",
    "MULTI_INDEX_TARGETS",
    "SPLITS",
    "SYNTHETIC",
    "TEST_STATISTICS",
    "TFDS",
    "DatasetNotPreparedError",
    "PreparedData",
    "Standardization",
    "apply_standardization",
    "as_class_labels",
    "balanced_indices",
    "check_test_statistics",
    "coherence",
    "feature_statistics",
    "gaussian_mixture",
    "has_test_split",
    "is_npz_path",
    "data_source",
    "load_dataset",
    "load_dataset_rows",
    "mnist5k_path",
    "mnist_shifted",
    "mnist_shifted_size",
    "modular_arithmetic",
    "multi_index",
    "multi_index_regression",
    "multi_index_target",
    "one_hot_pm1",
    "pow_mod_inverse",
    "prepare",
    "shift_image",
    "standardize",
]
