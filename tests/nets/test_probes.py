"""Probes for any NNX model: the patch AGOP against patches unfolded and differentiated per
sample in float64, the dense AGOP against ``agop`` of the sub-network above, collapse at each
layer against ``collapse_metrics`` of the captured features, sharded batches, per-block
collapse of a ResNet-18."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tolerances import F32, F64, ROUNDING

from dnc_jax import agop, collapse_metrics
from dnc_jax.nets.backbones import BasicBlock, ResNet18
from dnc_jax.nets.probes import cosine, probe, select_layers
from dnc_jax.sharding import DATA, data_mesh

C = 5


class CNN(nnx.Module):
    """conv (SAME) -> relu -> conv (the probed geometry) -> relu -> flatten -> dense."""

    def __init__(self, padding="SAME", stride=1, dilation=1, *, dtype=jnp.float64, seed=0):
        kw = dict(param_dtype=dtype, dtype=dtype, rngs=nnx.Rngs(seed))
        self.conv1 = nnx.Conv(1, 3, (3, 3), padding="SAME", **kw)
        self.conv2 = nnx.Conv(3, 4, (3, 3), strides=stride, padding=padding,
                              kernel_dilation=dilation, **kw)
        size = int(np.prod(self.features(jnp.zeros((1, 8, 8, 1), dtype)).shape[1:]))
        self.head = nnx.Linear(size, C, **kw)

    def features(self, x):
        return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))

    def __call__(self, x):
        h = self.features(x)
        return self.head(h.reshape(h.shape[0], -1))


def images(rng, n, dtype=np.float64):
    x = rng.normal(size=(n, 8, 8, 1)).astype(dtype)
    y = np.concatenate([np.arange(C), rng.integers(0, C, n - C)]).astype(np.int32)
    return x, y


def patch_agop_reference(model, x, padding, stride, dilation):
    """The CNFA definition directly: unfold conv2's input into patches (channel last within
    a patch, the kernel's order), write the network above as a function of the patches,
    and sum ``J^T J`` of every sample's per-patch Jacobian over classes and positions."""
    h = jax.nn.relu(model.conv1(x))
    K, b = model.conv2.kernel[...], model.conv2.bias[...]
    q1, q2, cin, _ = K.shape
    P = jax.lax.conv_general_dilated_patches(
        h, (q1, q2), (stride, stride), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n, H, W, _ = P.shape
    P = P.reshape(n, H, W, cin, q1, q2).transpose(0, 1, 2, 4, 5, 3).reshape(n, H, W, -1)
    Wf = K.reshape(-1, K.shape[-1])
    np.testing.assert_allclose(P @ Wf + b[None, None, None, :], model.conv2(h), rtol=1e-12, atol=1e-12)

    def above(patches):
        return model.head(jax.nn.relu(patches @ Wf + b[None, None, :]).reshape(-1))

    J = jax.vmap(jax.jacrev(above))(P)  # (n, C, H, W, q1 q2 cin)
    J = np.asarray(J).reshape(n, C, H * W, -1)
    return np.einsum("ncsf,ncsg->fg", J, J) / n, Wf


@pytest.mark.parametrize("padding,stride,dilation", [("SAME", 1, 1), ("VALID", 1, 1),
                                                     ("SAME", 2, 1), ("VALID", 1, 2)])
def test_patch_agop_equals_unfolded_per_sample_jacobians(x64, rng, padding, stride, dilation):
    model = CNN(padding, stride, dilation)
    x, y = images(rng, 30)
    found = {p.path: p for p in probe(model, [(x[:17], y[:17]), (x[17:], y[17:])],
                                      num_classes=C, second_pass=False)}
    want, Wf = patch_agop_reference(model, x, padding, stride, dilation)
    layer = found["conv2"]
    np.testing.assert_allclose(layer.agop, want, rtol=0, atol=ROUNDING[F64] * np.abs(want).max())
    # the official corr: the cosine of the filter covariance (divided by C_out) and the AGOP
    covariance = sum(np.outer(w, w) for w in np.asarray(Wf).T) / Wf.shape[1]
    official = np.sum(want * covariance) / (np.linalg.norm(want) * np.linalg.norm(covariance))
    assert layer.cosine == pytest.approx(official, rel=1e-12)
    assert cosine(layer.weight_gram, layer.agop) == layer.cosine


def test_dense_agop_is_agop_of_the_network_above(x64, rng):
    model = CNN()
    x, y = images(rng, 24)
    layer = {p.path: p for p in probe(model, [(x, y)], num_classes=C)}["head"]
    h = model.features(x).reshape(len(x), -1)
    want = agop(lambda v: model.head(v), h)
    np.testing.assert_allclose(layer.agop, want, rtol=0, atol=ROUNDING[F64] * np.abs(want).max())
    kernel = np.asarray(model.head.kernel[...])
    np.testing.assert_allclose(layer.weight_gram, kernel @ kernel.T, rtol=1e-12)


def test_collapse_at_each_layer_equals_collapse_metrics_of_its_features(rng):
    model = CNN(dtype=jnp.float32)
    x, y = images(rng, 60, np.float32)
    batches = [(x[s:s + 20], y[s:s + 20]) for s in range(0, 60, 20)]
    found = probe(model, batches, num_classes=C, layers=("conv2", "head"))
    assert [p.path for p in found] == ["conv2", "head"]
    h1 = jax.nn.relu(model.conv1(x))
    z2 = model.conv2(h1)
    features = {("conv2", "input"): h1, ("conv2", "output"): z2,
                ("head", "input"): jax.nn.relu(z2), ("head", "output"): model(x)}
    for (path, point), H in features.items():
        got = getattr({p.path: p for p in found}[path], point)
        want = collapse_metrics(np.asarray(H).reshape(60, -1), y)
        for field in ("nc1", "nc1_pinv", "nc2", "equinorm", "cdnv", "ncc_accuracy"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-3), (path, point, field)


def test_sharded_batches_equal_one_device(rng):
    model = CNN(dtype=jnp.float32)
    x, y = images(rng, 48, np.float32)
    mesh = data_mesh(4)
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA))
    plain = probe(model, [(x[:24], y[:24]), (x[24:], y[24:])], num_classes=C)
    sharded = probe(model, [(jax.device_put(x[s:s + 24], rows), jax.device_put(y[s:s + 24], rows))
                            for s in (0, 24)], num_classes=C)
    for a, b in zip(plain, sharded, strict=True):
        np.testing.assert_allclose(a.agop, b.agop, rtol=ROUNDING[F32], atol=1e-7 * np.abs(a.agop).max())
        assert a.output.nc1 == pytest.approx(b.output.nc1, rel=ROUNDING[F32])


def test_padding_rows_count_nowhere(rng):
    model = CNN(dtype=jnp.float32)
    x, y = images(rng, 20, np.float32)
    padded_x = np.concatenate([x, rng.normal(size=(4, 8, 8, 1)).astype(np.float32)])
    padded_y = np.concatenate([y, -np.ones(4, np.int32)])
    a = probe(model, [(x, y)], num_classes=C)[1]
    b = probe(model, [(padded_x, padded_y)], num_classes=C)[1]
    np.testing.assert_allclose(a.agop, b.agop, rtol=ROUNDING[F32], atol=1e-7 * np.abs(a.agop).max())
    assert a.input.nc1 == pytest.approx(b.input.nc1, rel=ROUNDING[F32])


class ResNetClassifier(nnx.Module):
    def __init__(self):
        self.backbone = ResNet18(1, rngs=nnx.Rngs(0))
        self.head = nnx.Linear(512, C, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.head(self.backbone(x, train=False))


@pytest.mark.slow
def test_resnet18_collapse_through_every_block(rng):
    model = ResNetClassifier()
    x, y = images(rng, 40, np.float32)
    found = probe(model, [(x[:20], y[:20]), (x[20:], y[20:])], num_classes=C, layers=BasicBlock)
    assert [p.path for p in found] == [f"backbone/blocks/{i}" for i in range(8)]
    assert all(p.kind == "module" and p.agop is None for p in found)
    outputs = []

    def keep(module, x, train):
        out = BasicBlock.__call__(module, x, train)
        outputs.append(out)
        return out

    h = jax.nn.relu(model.backbone.stem_bn(model.backbone.stem(x), use_running_average=True))
    h = nnx.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for block in model.backbone.blocks:
        h = keep(block, h, False)
    for layer, H in zip(found, outputs, strict=True):
        want = collapse_metrics(np.asarray(H).reshape(40, -1), y)
        assert layer.output.nc1 == pytest.approx(want.nc1, rel=1e-3), layer.path


def test_choices_and_refusals(rng):
    model = CNN(dtype=jnp.float32)
    assert [p for p in select_layers(model)] == [("conv1",), ("conv2",), ("head",)]
    assert select_layers(model, nnx.Conv) == [("conv1",), ("conv2",)]
    with pytest.raises(ValueError, match="no module at"):
        select_layers(model, ["conv3"])
    x, y = images(rng, 10, np.float32)
    with pytest.raises(ValueError, match="one-shot iterator"):
        probe(model, iter([(x, y)]), num_classes=C)
    one_pass = probe(model, iter([(x, y)]), num_classes=C, second_pass=False)
    assert np.isnan(one_pass[0].input.nc1_pinv) and one_pass[0].input.nc1 > 0
    twice = probe(model, lambda: itertools.islice(iter([(x, y)]), 1), num_classes=C)
    assert not np.isnan(twice[0].input.nc1_pinv)
    grouped = nnx.Sequential(nnx.Conv(4, 4, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="grouped convolution"):
        probe(grouped, [(np.zeros((2, 5, 5, 4), np.float32), np.array([0, 1]))], num_classes=2)


def test_classes_in_chunks_equal_all_at_once(rng):
    model = CNN(dtype=jnp.float32)
    x, y = images(rng, 16, np.float32)
    every = probe(model, [(x, y)], num_classes=C, second_pass=False)
    for k in (1, 2):  # 5 classes: chunks of 2 pad the last one
        chunked = probe(model, [(x, y)], num_classes=C, second_pass=False, classes_at_once=k)
        for a, b in zip(every, chunked, strict=True):
            np.testing.assert_allclose(b.agop, a.agop, rtol=ROUNDING[F32],
                                       atol=1e-6 * np.abs(a.agop).max())
    with pytest.raises(ValueError, match="classes_at_once"):
        probe(model, [(x, y)], num_classes=C, classes_at_once=0)


def test_each_call_reads_the_model_as_it_is_then(rng):
    """Nothing is cached by identity: after the weights change, the next probe sees them
    (the head's AGOP is ``W^T W`` exactly, the network above it being the identity)."""
    model = CNN(dtype=jnp.float32)
    x, y = images(rng, 12, np.float32)
    before = probe(model, [(x, y)], num_classes=C, layers=["head"], second_pass=False)[0]
    kernel = np.asarray(model.head.kernel[...])
    np.testing.assert_allclose(before.agop, kernel @ kernel.T, rtol=1e-5, atol=1e-7)
    model.head.kernel[...] = 2.0 * model.head.kernel[...]
    after = probe(model, [(x, y)], num_classes=C, layers=["head"], second_pass=False)[0]
    np.testing.assert_allclose(after.agop, 4.0 * before.agop, rtol=1e-5, atol=1e-7)
