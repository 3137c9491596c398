"""Kernel families: radial profiles ``k = phi(r / L)`` of the distance ``r = ||x - z||_M``,
and the L1 (product) Laplace kernel.

A family is a static, hashable value; its hyperparameters (the bandwidth ``L``, the
metric ``M``) are arrays passed beside it (``dnc_jax.kernels.Kernel`` holds the three).

**Radial families** give their values and the gradient weights of the closed-form AGOP
from squared distances ``d2``: ``grad_x k(x, z) = W M (z - x)`` with
``W = -phi'(t) / (t L^2)``, ``t = r / L`` (``W = 0`` at ``r = 0``, where ``z - x = 0``
makes the term vanish whatever ``W``), so a new radial kernel needs only its profile
``phi`` (``radial_kernel``) and gets the closed form. Laplace ``exp(-t)``, Gaussian
``exp(-t^2 / 2)``, Matérn 3/2 ``(1 + sqrt3 t) exp(-sqrt3 t)`` and 5/2
``(1 + sqrt5 t + 5 t^2 / 3) exp(-sqrt5 t)`` (Rasmussen & Williams 2006, eq. 4.17).
A profile with ``phi'(0) != 0`` (Laplace) is *steep* at 0: its near distances are
recomputed by direct difference (``distances.kernel_distances``).

**The L1 Laplace kernel** ``exp(-sum_k |x_k - z_k| / L)`` (xRFM's product Laplace; the
kernel the official code's Cauchy random features approximate) is not radial in ``M``:
it takes no metric, and its AGOP comes from autodiff; likewise the **quadratic kernel**
``3 (x . z)^2`` of the grokking follow-up. Nor are the **NTK and NNGP of a deep
ReLU network** (``kernels.arccos``; ``relu_ntk`` / ``relu_nngp`` for one hidden layer,
``ArcCosine(kind, depth)`` for more).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from dnc_jax.kernels.arccos import ArcCosine
from dnc_jax.kernels.distances import NEAR_PAIRS, safe_sqrt, squared_distances, zero_or_nan
from dnc_jax.precision import matmul
from dnc_jax.programs import ElementwiseProgram


def _laplace_values(d2, L):
    return jnp.exp(-safe_sqrt(d2) / L)


def _laplace_weights(d2, L, K):
    dist = safe_sqrt(d2)
    return jnp.where(dist > 0, K / jnp.where(dist > 0, dist, 1.0), zero_or_nan(dist)) / L


def _gaussian_values(d2, L):
    return jnp.exp(-d2 / (2.0 * L**2))


def _gaussian_weights(d2, L, K):
    return K / L**2


SQRT3, SQRT5 = 3.0**0.5, 5.0**0.5


def valid_bandwidth(bandwidth):
    """``bandwidth``, or NaN where it is not a positive finite number: a kernel with
    ``L <= 0`` is undefined (``exp(-r / L)`` would grow with the distance), and ``L = inf``
    would make every entry 1."""
    bandwidth = jnp.asarray(bandwidth)
    return jnp.where(jnp.isfinite(bandwidth) & (bandwidth > 0), bandwidth, jnp.nan)


def laplace_profile(t):
    """``exp(-t)``."""
    return jnp.exp(-t)


def gaussian_profile(t):
    """``exp(-t^2 / 2)``."""
    return jnp.exp(-(t**2) / 2.0)


def matern32_profile(t):
    """``(1 + sqrt(3) t) exp(-sqrt(3) t)``."""
    return (1.0 + SQRT3 * t) * jnp.exp(-SQRT3 * t)


def matern52_profile(t):
    """``(1 + sqrt(5) t + 5 t^2 / 3) exp(-sqrt(5) t)``."""
    return (1.0 + SQRT5 * t + 5.0 * t**2 / 3.0) * jnp.exp(-SQRT5 * t)


@dataclasses.dataclass(frozen=True)
class Radial:
    """A radial kernel family ``k(x, z) = profile(||x - z||_M / L)``.

    Static under ``jit`` (part of the program). A user's profile is held as the programs
    it traced to when the family was made (``programs.ElementwiseProgram``): families
    compare by those programs, not by the identity of a function whose closure could
    change under a compiled program.

    Attributes:
      name: what records and errors call it.
      profile: ``phi``, elementwise on ``t >= 0``, ``phi(0) = 1`` for a normalised kernel.
      steep: whether ``phi'(0) != 0`` (near distances then recomputed by difference).
      values, weights: optional exact formulas from squared distances (``(d2, L)`` and
        ``(d2, L, K)``) used instead of the profile's (the Laplace and Gaussian kernels
        keep their historical rounding).
    """

    name: str
    profile: Callable
    steep: bool
    values: Callable | None = None
    weights: Callable | None = None

    def kernel_values(self, d2: jax.Array, bandwidth) -> jax.Array:
        """``k`` from squared distances ``d2`` (any shape); NaN for a bandwidth that is
        not positive (a traced one: an eager one is refused before)."""
        bandwidth = valid_bandwidth(bandwidth)
        if self.values is not None:
            return self.values(d2, bandwidth)
        return self.profile(safe_sqrt(d2) / bandwidth)

    def gradient_weights(self, d2: jax.Array, bandwidth) -> tuple[jax.Array, jax.Array]:
        """``(K, W)`` from squared distances: ``grad_x k(x, z) = W M (z - x)``."""
        K = self.kernel_values(d2, bandwidth)
        bandwidth = valid_bandwidth(bandwidth)
        if self.weights is not None:
            return K, self.weights(d2, bandwidth, K)
        t = safe_sqrt(d2) / bandwidth
        positive = t > 0
        t_safe = jnp.where(positive, t, 1.0)
        _, slope = jax.jvp(self.profile, (t_safe,), (jnp.ones_like(t_safe),))
        return K, jnp.where(positive, -slope / (t_safe * bandwidth**2), zero_or_nan(t))


@dataclasses.dataclass(frozen=True)
class L1Laplace:
    """``exp(-||x - z||_1 / L)``: no metric; AGOP by autodiff."""

    name: str = "l1_laplace"

    def matrix(self, X: jax.Array, Z: jax.Array, bandwidth) -> jax.Array:
        l1 = jnp.sum(jnp.abs(X[:, None, :] - Z[None, :, :]), axis=-1)
        return jnp.exp(-l1 / valid_bandwidth(bandwidth))


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """``3 (x . z)^2``: the quadratic kernel of ``nmallinar/rfm-grokking``
    (``models/quadratic_kernel.py``, ``quadratic_M``: ``3 ((x M) z^T)^2``, here on inputs
    already mapped by ``M^(1/2)``). No bandwidth, no metric; AGOP by autodiff."""

    name: str = "quadratic"

    def matrix(self, X: jax.Array, Z: jax.Array, bandwidth=None) -> jax.Array:
        return 3.0 * matmul(X, Z.T) ** 2


LAPLACE = Radial("laplace", laplace_profile, True, _laplace_values, _laplace_weights)
GAUSSIAN = Radial("gaussian", gaussian_profile, False, _gaussian_values, _gaussian_weights)
MATERN32 = Radial("matern32", matern32_profile, False)
MATERN52 = Radial("matern52", matern52_profile, False)
L1_LAPLACE = L1Laplace()
QUADRATIC = Quadratic()

FAMILIES: dict[str, Radial | L1Laplace | Quadratic | ArcCosine] = {
    f.name: f for f in (LAPLACE, GAUSSIAN, MATERN32, MATERN52, L1_LAPLACE, QUADRATIC)}
FAMILIES |= {"relu_ntk": ArcCosine("ntk", 1), "relu_nngp": ArcCosine("nngp", 1)}
KERNELS = tuple(FAMILIES)  # the built-in families; kernel_names() adds the registered ones
Family = Radial | L1Laplace | Quadratic | ArcCosine
_DEPTH_PREFIXES = ("relu_ntk_", "relu_nngp_")  # the arc-cosine kernels of other depths


def register_kernel(family: Family) -> Family:
    """Make a family known by its name wherever a kernel is named: ``family_of`` (so every
    function taking a kernel name), the configurations' and the command line's kernel
    choices (``kernel_names``), and loading a saved model (no ``kernel=`` needed). Returns
    ``family``. Registering an equal family again does nothing; a built-in name, an
    arc-cosine name (``relu_ntk_<depth>``) or a name registered to another family is a
    ``ValueError``. A host-side call (not under ``jit``); the families it registers are
    static values and compose with the transformations as any family does. The registry
    belongs to the process: register at import time of the module that defines the
    family, e.g. ``CAUCHY = register_kernel(radial_kernel(lambda t: 1.0 / (1.0 + t**2),
    name="cauchy"))``.
    """
    if not isinstance(family, Radial | L1Laplace | Quadratic | ArcCosine):
        raise ValueError("register_kernel takes a kernel family (e.g. radial_kernel(profile, "
                         f"name=...)); got {type(family).__name__}.")
    name = family.name
    if name in KERNELS or name.startswith(_DEPTH_PREFIXES):
        raise ValueError(f"{name!r} names a built-in kernel; give the family another name.")
    if FAMILIES.get(name, family) != family:
        raise ValueError(f"another family is registered as {name!r}; give this one another name.")
    FAMILIES[name] = family
    return family


def kernel_names() -> tuple[str, ...]:
    """Every kernel name ``family_of`` knows: the built-in ones (``KERNELS``), then the
    registered ones in the order of registration."""
    return tuple(FAMILIES)


def radial_kernel(profile: Callable, name: str | None = None) -> Radial:
    """A radial family from a user's profile ``phi(t)``, ``t = ||x - z||_M / L``.

    The family it returns is static under ``jit``; kernels built from it support ``jit``,
    ``vmap`` and ``grad``.

    Its AGOP is in closed form from ``phi'`` (autodiff of the profile, elementwise). The
    profile must be a JAX-traceable elementwise function of ``t`` alone. It is read once,
    here: the family holds the programs it traces to (numbers it closes over are fixed
    now, so call ``radial_kernel`` again after changing one; arrays are refused), and
    families compare by those programs, so a new lambda with the same body reuses the
    compiled programs. ``name`` defaults to the profile's ``__name__``.

    Example:
      >>> import jax.numpy as jnp
      >>> from dnc_jax.kernels import radial_kernel
      >>> family = radial_kernel(lambda t: 1.0 / (1.0 + t**2), name="cauchy")
      >>> family.steep
      False
    """
    if not callable(profile):
        raise ValueError(f"profile must be a callable phi(t); got {type(profile).__name__}.")
    try:
        at_zero, slope = jax.jvp(profile, (jnp.zeros(()),), (jnp.ones(()),))
    except Exception as err:  # noqa: BLE001 - any failure means it is not traceable
        raise ValueError(f"profile must be a JAX-traceable function of t: {err}") from err
    if jnp.shape(at_zero) != ():
        raise ValueError(f"profile must map a scalar t to a scalar; got shape {jnp.shape(at_zero)}.")
    name = str(name or getattr(profile, "__name__", "radial"))
    return Radial(name, ElementwiseProgram(profile, f"the profile of {name}"), bool(slope != 0))


def family_of(kernel: str | Family) -> Family:
    """The family named by ``kernel`` (a name in ``kernel_names()`` or a family value), or
    ``ValueError``."""
    if isinstance(kernel, Radial | L1Laplace | Quadratic | ArcCosine):
        return kernel
    if isinstance(kernel, str) and kernel in FAMILIES:
        return FAMILIES[kernel]
    if isinstance(kernel, str) and kernel.startswith(_DEPTH_PREFIXES):
        kind, _, depth = kernel[len("relu_"):].partition("_")
        if depth.isdigit() and int(depth) >= 1:
            return ArcCosine(kind, int(depth))
    raise ValueError(f"Unknown kernel {kernel!r}; choose one of {kernel_names()} or a family "
                     "from dnc_jax.kernels.radial_kernel (register_kernel names it).")


def uses_bandwidth(kernel: str | Family) -> bool:
    """Whether the family has a bandwidth (the arc-cosine and quadratic kernels have none)."""
    return isinstance(family_of(kernel), Radial | L1Laplace)


def kernel_name(kernel: str | Family) -> str:
    """The name records use for ``kernel``: for a built-in family, a name ``family_of``
    maps back to it."""
    return family_of(kernel).name


def kernel_distances(X: jax.Array, Z: jax.Array, kernel: str | Family,
                     M: jax.Array | None = None) -> jax.Array:
    """``squared_distances`` as a radial ``kernel`` (a name or a family) needs them: the
    near pairs of a kernel steep at 0 (Laplace) by direct difference (``NEAR_PAIRS``),
    the others (smooth at 0) by the expansion."""
    family = family_of(kernel)
    steep = isinstance(family, Radial) and family.steep
    return squared_distances(X, Z, M, near=NEAR_PAIRS if steep else 0)
