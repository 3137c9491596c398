"""Kernel predictions do not depend on the batch or the device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_batch_invariant

from dnc_jax import data_mesh, fit_kernel_predictor
from dnc_jax.predictor import predict_block

N_TEST = 2 * predict_block() + 37  # three blocks, the last one padded


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("with_metric", [False, True])
def test_kernel_predictions_are_batch_invariant(rng, kernel, with_metric):
    X = rng.standard_normal((200, 12)).astype(np.float32)
    Y = rng.standard_normal((200, 3)).astype(np.float32)
    A = rng.standard_normal((12, 12)).astype(np.float32) / 4
    M = A @ A.T + np.eye(12, dtype=np.float32) if with_metric else None
    pred = fit_kernel_predictor(X, Y, kernel=kernel, bandwidth=3.0, reg=1e-3, M=M)
    T = rng.standard_normal((N_TEST, 12)).astype(np.float32)
    assert_batch_invariant(pred.predict, T, rng)
    transform = np.linalg.qr(A)[0].astype(np.float32)
    assert_batch_invariant(lambda Z: pred.predict(Z, transform=transform), T, rng)
    # x T inside the blocks is as accurate as x T taken first: both against float64
    with jax.enable_x64(True):
        pred64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), pred)
        ref = np.asarray(pred64.predict(np.float64(T) @ np.float64(transform)))
    inside = np.abs(np.asarray(pred.predict(T, transform=transform)) - ref).max()
    outside = np.abs(np.asarray(pred.predict(T @ transform)) - ref).max()
    assert inside <= 2 * outside + 1e-6 * np.abs(ref).max()


@pytest.mark.slow
@pytest.mark.parametrize("sharded_centres", [False, True])
def test_sharded_predictions_do_not_depend_on_the_device(rng, sharded_centres):
    """On 4 devices a row's prediction is the same whichever device holds it: the ring
    adds the centre shards in a fixed order (``sharding.ring_sum``)."""
    from dnc_jax.sharding import Rows, as_rows

    mesh = data_mesh("all")
    X = rng.standard_normal((203, 10)).astype(np.float32)
    Y = rng.standard_normal((203, 2)).astype(np.float32)
    if sharded_centres:
        pred, _ = __import__("dnc_jax").fit_kernel_ridge(
            as_rows(X, mesh), as_rows(Y, mesh), bandwidth=2.0, reg=1e-3, solver="cg",
            tol=1e-6, mesh=mesh)
        assert pred.mesh is not None
    else:
        pred = fit_kernel_predictor(X, Y, bandwidth=2.0, reg=1e-3)
    T = rng.standard_normal((N_TEST, 10)).astype(np.float32)

    def out(Z):
        got = pred.predict(as_rows(Z, mesh))
        assert isinstance(got, Rows)
        return got.valid()

    assert_batch_invariant(out, T, rng)


def test_a_predictor_is_its_kernel_value_with_centres_and_coefficients(rng):
    """``KernelPredictor(kernel, centers, coefs)``: the kernel is one ``Kernel`` value whose
    bandwidth and metric are the pytree's leaves (a new bandwidth is data: ``vmap`` over
    it); the old order (centres first) is refused, not read as something else; a pickle
    in the layout 0.6.0 wrote, ``(centers, coefs, M, family, bandwidth)``, still loads."""
    import pickle

    from dnc_jax import Kernel, KernelPredictor
    from dnc_jax.predictor import _unpickle_predictor

    X = jnp.asarray(rng.standard_normal((12, 3)), jnp.float32)
    coefs = jnp.asarray(rng.standard_normal((12, 2)), jnp.float32)
    M = jnp.asarray(np.diag([1.0, 2.0, 0.5]), jnp.float32)
    pred = KernelPredictor(Kernel("gaussian", 1.5, M), X, coefs)
    assert (pred.family.name, float(pred.bandwidth)) == ("gaussian", 1.5)
    np.testing.assert_array_equal(np.asarray(pred.M), np.asarray(M))
    leaves = jax.tree.leaves(pred)
    assert len(leaves) == 4 and any(leaf is M for leaf in leaves)  # bandwidth, M, centres, coefs
    Xq = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
    swept = jax.vmap(lambda L: KernelPredictor(Kernel("gaussian", L, M), X, coefs).predict(Xq))(
        jnp.asarray([1.5, 3.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(swept[0]), np.asarray(pred.predict(Xq)), rtol=1e-6)
    with pytest.raises(TypeError, match="kernel is a Kernel value"):
        KernelPredictor(X, coefs, M)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # the five arguments of 0.6.0: too many
        KernelPredictor(X, coefs, M, "gaussian", 1.5)  # type: ignore[call-arg]
    old = _unpickle_predictor(np.asarray(X), np.asarray(coefs), np.asarray(M), "gaussian",
                              np.asarray(1.5))
    np.testing.assert_array_equal(np.asarray(old.predict(Xq)), np.asarray(pred.predict(Xq)))
    again = pickle.loads(pickle.dumps(pred))
    np.testing.assert_array_equal(np.asarray(again.predict(Xq)), np.asarray(pred.predict(Xq)))
    with pytest.warns(DeprecationWarning, match="kernel_value"):
        assert pred.kernel_value is pred.kernel
