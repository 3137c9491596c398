"""dnc_jax: deep neural collapse through the average gradient outer product, in JAX."""

from dnc_jax._checks import checked
from dnc_jax.class_statistics import ClassStatistics
from dnc_jax.collapse import CollapseMetrics, collapse_metrics
from dnc_jax.collapse_toolkit import (
    ClassMoments,
    class_moments,
    hyperspherical_uniformity,
    ncc_agreement,
    ood_orthogonality,
    tiled_cdnv,
    uniform_duality,
)
from dnc_jax.data import load_dataset, prepare
from dnc_jax.deep_rfm_files import load_deep_rfm, save_deep_rfm
from dnc_jax.deep_rfm_model import DeepRFM, DeepRFMConfig, deep_rfm
from dnc_jax.estimators import RFM, RFMClassifier, RFMRegressor
from dnc_jax.gradient_outer_product import agop, kernel_agop, kernel_gradients, matrix_power
from dnc_jax.kernels import (
    Kernel,
    gaussian_kernel,
    kernel_matrix,
    laplace_kernel,
    radial_kernel,
    register_kernel,
)
from dnc_jax.layer_records import LayerRecord
from dnc_jax.nets import (
    MLP,
    EpochRecord,
    HeadLayerRecord,
    LayerProbe,
    TrainConfig,
    layer_analysis,
    probe,
    train_mlp,
)
from dnc_jax.predictor import KernelPredictor
from dnc_jax.rfm import RFMFit, RFMIteration, fit_rfm, fit_with_agop, rfm_step
from dnc_jax.sharding import Rows, as_rows, data_mesh
from dnc_jax.solvers import (
    SolveInfo,
    SolverOptions,
    fit_kernel_predictor,
    fit_kernel_ridge,
    solve_psd,
)
from dnc_jax.solvers.core import fit

__version__ = "0.6.0"

__all__ = [
    "ClassMoments",
    "ClassStatistics",
    "CollapseMetrics",
    "DeepRFM",
    "DeepRFMConfig",
    "EpochRecord",
    "HeadLayerRecord",
    "Kernel",
    "KernelPredictor",
    "LayerProbe",
    "LayerRecord",
    "MLP",
    "RFM",
    "RFMClassifier",
    "RFMFit",
    "RFMIteration",
    "RFMRegressor",
    "Rows",
    "SolveInfo",
    "SolverOptions",
    "TrainConfig",
    "agop",
    "as_rows",
    "checked",
    "class_moments",
    "collapse_metrics",
    "data_mesh",
    "deep_rfm",
    "fit",
    "fit_kernel_predictor",
    "fit_kernel_ridge",
    "fit_rfm",
    "fit_with_agop",
    "gaussian_kernel",
    "hyperspherical_uniformity",
    "kernel_agop",
    "kernel_gradients",
    "kernel_matrix",
    "laplace_kernel",
    "layer_analysis",
    "load_dataset",
    "load_deep_rfm",
    "matrix_power",
    "ncc_agreement",
    "ood_orthogonality",
    "prepare",
    "probe",
    "radial_kernel",
    "register_kernel",
    "rfm_step",
    "save_deep_rfm",
    "solve_psd",
    "tiled_cdnv",
    "train_mlp",
    "uniform_duality",
]
