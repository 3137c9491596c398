"""The suite's tolerances by dtype, in one table.

``ROUNDING``: the same quantity computed two ways (a closed form against a direct sum, a
jitted against an eager program, a sharded against a one-device run), each a
well-conditioned reduction of at most a few thousand terms: a few hundred ulps of the
dtype (``eps`` = 1.2e-7 in float32, 2.2e-16 in float64), relative.
``AUTODIFF``: a closed-form AGOP against autodiff of the predictor: the two sum the same
products in different orders and through different intermediate roundings (the kernel's
distances), so float32 keeps about five digits.

A test that needs another tolerance states it with its reason (an iterative solve's
stopping rule, a conditioning bound, a measured spread).
"""

import numpy as np

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
ROUNDING = {F32: 1e-5, F64: 1e-12}
AUTODIFF = {F32: 2e-5, F64: 1e-12}
# autodiff against a reference in batches of different size: float32 only, summed in
# different block orders over the batch (looser than ROUNDING by the batch count)
BATCHED = {F32: 1e-4, F64: 1e-5}
