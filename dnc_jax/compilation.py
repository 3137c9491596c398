"""How XLA compiles dnc_jax's programs on GPUs: the one flag the command line sets.

XLA's GPU autotuner times many Triton tilings for every matrix product of every program it
compiles. A Deep RFM layer compiles dozens of programs of different shapes, so with XLA's
defaults the first layer at n = 50,000 spent ~100 s compiling on an H100 against 2 s of
warm work (BENCHMARKS.md, "Deep RFM at scale"). With Triton GEMMs off, XLA still autotunes cuBLAS,
whose float32 products ran at the same ~50 TFLOP/s there, and the first layer took 10 s.
Autotuning off altogether (``--xla_gpu_autotune_level=0``) compiles fast too but left the
products at 8 TFLOP/s. The flag is a no-op on CPUs and TPUs.

Compiled programs persist across runs when ``JAX_COMPILATION_CACHE_DIR`` names a folder
(JAX's own setting); on the H100 it cut the first layer from 10.0 s to 7.0 s.
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
