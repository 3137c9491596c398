"""How XLA compiles dnc_jax's programs on GPUs: the one flag the command line sets.

XLA's GPU autotuner times many Triton tilings for every matrix product of every program it
compiles, and a Deep RFM layer compiles dozens of programs of different shapes. With Triton
GEMMs off (``GPU_FLAGS``) XLA still autotunes cuBLAS, whose float32 products run at the
same rate, and compiling stops dominating the first layer; turning autotuning off
altogether compiles fast too but leaves the products several times slower. The
measurements behind this choice are in BENCHMARKS.md ("Measurements the code's choices
rest on"). The flag is a no-op on CPUs and TPUs.

Compiled programs persist across runs when ``JAX_COMPILATION_CACHE_DIR`` names a folder
(JAX's own setting).
"""

from __future__ import annotations

import os

GPU_FLAGS = ("--xla_gpu_enable_triton_gemm=false",)


def set_gpu_flags(environ=os.environ) -> list[str]:
    """Add each of ``GPU_FLAGS`` to ``XLA_FLAGS`` unless that variable already sets the
    same option (the user's value wins). Takes effect only before JAX starts its backend
    (the first computation); returns the flags added."""
    current = environ.get("XLA_FLAGS", "")
    given = {flag.split("=")[0] for flag in current.split()}
    added = [flag for flag in GPU_FLAGS if flag.split("=")[0] not in given]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
