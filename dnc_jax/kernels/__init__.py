"""Kernels: squared distances, kernel families (radial profiles, the L1 Laplace kernel) and
kernel values (``Kernel``)."""

from dnc_jax.kernels.arccos import ArcCosine, arccos_kernels
from dnc_jax.kernels.distances import NEAR_PAIRS, safe_sqrt, squared_distances
from dnc_jax.kernels.families import (
    FAMILIES,
    GAUSSIAN,
    KERNELS,
    L1_LAPLACE,
    LAPLACE,
    MATERN32,
    MATERN52,
    QUADRATIC,
    Family,
    L1Laplace,
    Quadratic,
    Radial,
    family_of,
    kernel_distances,
    kernel_name,
    kernel_names,
    radial_kernel,
    register_kernel,
    uses_bandwidth,
)
from dnc_jax.kernels.value import Kernel, gaussian_kernel, kernel_matrix, laplace_kernel

__all__ = [
    "ArcCosine",
    "FAMILIES",
    "GAUSSIAN",
    "KERNELS",
    "L1_LAPLACE",
    "LAPLACE",
    "MATERN32",
    "MATERN52",
    "NEAR_PAIRS",
    "QUADRATIC",
    "Family",
    "Kernel",
    "L1Laplace",
    "Quadratic",
    "Radial",
    "arccos_kernels",
    "family_of",
    "gaussian_kernel",
    "kernel_distances",
    "kernel_matrix",
    "kernel_name",
    "kernel_names",
    "laplace_kernel",
    "radial_kernel",
    "register_kernel",
    "safe_sqrt",
    "squared_distances",
    "uses_bandwidth",
]
