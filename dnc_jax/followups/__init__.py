"""Follow-up results on the same engine: grokking modular arithmetic with RFM, and
recovering a multi-index model's hidden subspace from a kernel machine's AGOP."""

from dnc_jax.followups.grokking import (
    GrokkingConfig,
    GrokkingIteration,
    alignment,
    block_deviations,
    circulant_deviation,
    discrete_log_order,
    grokking_rfm,
    per_class_agops,
    primitive_root,
)
from dnc_jax.followups.multi_index import (
    MultiIndexConfig,
    MultiIndexStep,
    multi_index_rfm,
    subspace_distance,
)
from dnc_jax.followups.network_grokking import NetGrokkingConfig, grokking_net
from dnc_jax.followups.random_circulant import random_circulant_fit, random_circulant_metric

__all__ = [
    "GrokkingConfig",
    "GrokkingIteration",
    "MultiIndexConfig",
    "MultiIndexStep",
    "NetGrokkingConfig",
    "alignment",
    "block_deviations",
    "circulant_deviation",
    "discrete_log_order",
    "grokking_net",
    "grokking_rfm",
    "multi_index_rfm",
    "per_class_agops",
    "primitive_root",
    "random_circulant_fit",
    "random_circulant_metric",
    "subspace_distance",
]
