"""Misuse fuzz: the public functions given bad input, eagerly and under ``jit``.

Each case is a public call with one thing wrong (NaN or infinity at a drawn place, a
wrong shape or dtype, labels out of range, an empty class, a hyperparameter that is zero,
negative or not finite, an unknown option string). Its outcome must be one of

- ``error``: a ``ValueError`` (eagerly, or when a traced call's shapes are checked);
- ``checkify``: ``dnc_jax.checked`` reports it under ``jit`` (``JaxRuntimeError``);
- ``nan``: the documented NaN of an unchecked traced call (or of a NaN input row);

and never ``silent``: a result with no NaN and no error. Hypothesis draws where the bad
value goes and which bad value it is. ``python tests/test_misuse_fuzz.py`` prints the
counts per function (TESTING.md).
"""

import collections
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import dnc_jax as dj

BAD_FLOATS = [np.nan, np.inf, -np.inf]
BAD_HYPER = [0.0, -1.0, -1e-3, np.nan, np.inf]
N, D, C = 24, 4, 3


def outcome(call) -> str:
    """How ``call`` ended: ``error``, ``checkify``, ``nan`` or ``silent`` (module docstring).
    Any other exception propagates and fails the test: it is not a clear message."""
    try:
        out = call()
    except checkify.JaxRuntimeError:  # first: it is also a ValueError
        return "checkify"
    except ValueError:
        return "error"
    floats = [np.asarray(leaf) for leaf in jax.tree.leaves(out)
              if np.issubdtype(np.asarray(leaf).dtype, np.floating)]
    return "nan" if any(np.isnan(leaf).any() for leaf in floats) else "silent"


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = np.arange(N) % C
    return X, y, dj.data.one_hot_pm1(y, C)


def _poison(A, row, col, value):
    A = np.array(A, dtype=np.float32, copy=True)
    A[row % A.shape[0], col % A.shape[1]] = value
    return A


def _predictor():
    X, _, Y = _data()
    return dj.fit(dj.Kernel("laplace", 2.0), X, Y, 1e-2)


def _tanh_map(x, B):
    return jnp.tanh(B @ x)


# Each case: (function, name, make) where make(draw) returns (fn, args): fn(*args) is the
# call, jitted over args for the traced modes. ``traceable`` marks what composes with jit.
def one_of(options):
    """A drawn choice among ``options`` (drawn by hypothesis, or seeded for the table)."""
    return ("choice", list(options))


def int_in(lo, hi):
    """A drawn integer in ``lo..hi``."""
    return ("int", lo, hi)


def hypothesis_draw(data):
    def draw(spec):
        if spec[0] == "choice":
            return data.draw(st.sampled_from(spec[1]))
        return data.draw(st.integers(spec[1], spec[2]))
    return draw


def seeded_draw(rng):
    def draw(spec):
        return rng.choice(spec[1]) if spec[0] == "choice" else rng.randint(spec[1], spec[2])
    return draw


def _cases():
    X, y, Y = _data()
    B = np.random.default_rng(1).standard_normal((C, D)).astype(np.float32)
    cases = []

    def case(function, name, make, traceable=True):
        cases.append((function, name, make, traceable))

    # kernel_matrix / laplace_kernel
    case("kernel_matrix", "bad bandwidth",
         lambda d: (lambda L: dj.kernel_matrix(X, X, d(one_of(
             ["laplace", "gaussian", "matern32", "l1_laplace"])), L), (d(one_of(BAD_HYPER)),)))
    case("kernel_matrix", "bad value in X",
         lambda d: (lambda X: dj.laplace_kernel(X, X[:5], 1.0),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("kernel_matrix", "unknown family",
         lambda d: (lambda X: dj.kernel_matrix(X, X, d(one_of(["laplacian", "rbf", ""])), 1.0), (X,)),
         traceable=False)
    # fit
    case("fit", "bad value in X",
         lambda d: (lambda X: dj.fit(dj.Kernel("laplace", 2.0), X, Y, 1e-2).coefs,
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("fit", "bad value in Y",
         lambda d: (lambda Y: dj.fit(dj.Kernel("gaussian", 2.0), X, Y, 1e-2).coefs,
                    (_poison(Y, d(int_in(0, N)), d(int_in(0, C)), d(one_of(BAD_FLOATS))),)))
    case("fit", "bad ridge",
         lambda d: (lambda r: dj.fit(dj.Kernel("laplace", 2.0), X, Y, r).coefs,
                    (d(one_of([-1.0, -1e-3, np.nan, np.inf])),)))
    case("fit", "bad bandwidth",
         lambda d: (lambda L: dj.fit(dj.Kernel("laplace", L), X, Y, 1e-2).coefs,
                    (d(one_of(BAD_HYPER)),)))
    case("fit", "bad value in M",
         lambda d: (lambda M: dj.fit(dj.Kernel("laplace", 2.0, M), X, Y, 1e-2).coefs,
                    (_poison(np.eye(D), d(int_in(0, D)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("fit", "wrong Y rows",
         lambda d: (lambda Y: dj.fit(dj.Kernel("laplace", 2.0), X, Y, 1e-2).coefs,
                    (Y[: d(int_in(1, N - 1))],)))
    case("fit", "unknown solver",
         lambda d: (lambda X: dj.fit(dj.Kernel("laplace", 2.0), X, Y, 1e-2,
                                     solver=d(one_of(["chol", "CG", "lu"]))).coefs, (X,)))
    # predict
    case("predict", "bad value in X",
         lambda d: (lambda X: _predictor().predict(X),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("predict", "wrong feature count",
         lambda d: (lambda X: _predictor().predict(X), (X[:, : d(int_in(1, D - 1))],)))
    # agop
    case("agop", "bad value in X",
         lambda d: (lambda X: dj.agop(_tanh_map, X, B),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("agop", "unknown normalize",
         lambda d: (lambda X: dj.agop(_tanh_map, X, B, normalize=d(one_of(["l2", "Max", "sum"]))),
                    (X,)))
    case("agop", "bad batch size",
         lambda d: (lambda X: dj.agop(_tanh_map, X, B, batch_size=d(one_of([0, -3]))), (X,)))
    case("agop", "1-D X", lambda d: (lambda X: dj.agop(_tanh_map, X[0], B), (X,)))
    # kernel_agop
    case("kernel_agop", "bad value in X",
         lambda d: (lambda X: dj.kernel_agop(_predictor(), X),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("kernel_agop", "wrong feature count",
         lambda d: (lambda X: dj.kernel_agop(_predictor(), X), (X[:, : d(int_in(1, D - 1))],)))
    # collapse_metrics
    case("collapse_metrics", "bad value in features",
         lambda d: (lambda H: dj.collapse_metrics(H, y, num_classes=C),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("collapse_metrics", "label out of range",
         lambda d: (lambda labels: dj.collapse_metrics(X, labels, num_classes=C),
                    (np.where(np.arange(N) == d(int_in(0, N - 1)),
                              d(one_of([-1, C, C + 4])), y),)))
    case("collapse_metrics", "empty class",
         lambda d: (lambda labels: dj.collapse_metrics(X, labels, num_classes=C),
                    (np.where(y == d(int_in(0, C - 1)), (y + 1) % C, y),)))
    case("collapse_metrics", "float labels",
         lambda d: (lambda labels: dj.collapse_metrics(X, labels, num_classes=C),
                    (y.astype(np.float32) + d(one_of([0.5, 0.25])),)))
    case("collapse_metrics", "one class",
         lambda d: (lambda labels: dj.collapse_metrics(X, labels, num_classes=1), (0 * y,)))
    # matrix_power
    case("matrix_power", "bad value in M",
         lambda d: (lambda M: dj.matrix_power(M, 0.5),
                    (_poison(np.eye(D), d(int_in(0, D)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)))
    case("matrix_power", "not square", lambda d: (lambda M: dj.matrix_power(M, 0.5), (X,)))
    # shell functions (eager only)
    case("RFMClassifier.fit", "bad option",
         lambda d: (lambda X: dj.RFMClassifier(**({"iters": 1} | d(one_of(
             [{"normalize": "l2"}, {"kernel": "rbf"}, {"solver": "lu"}, {"agop_samples": 0},
              {"iters": -1}, {"bandwidth": -1.0}, {"reg": -1.0}])))).fit(X, y), (X,)),
         traceable=False)
    case("RFM.fit", "unknown task",
         lambda d: (lambda X: dj.RFM(task=d(one_of(["ranking", "classify"]))).fit(X, y), (X,)),
         traceable=False)
    case("RFMClassifier.fit", "bad value in X",
         lambda d: (lambda X: dj.RFMClassifier(iters=1).fit(X, y),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)),
         traceable=False)
    case("deep_rfm", "bad labels",
         lambda d: (lambda X: dj.deep_rfm(X, d(one_of(
             [Y, np.array(list("abc"))[y], y - 1, y + 0.5])), depth=1, width=8), (X,)),
         traceable=False)
    case("deep_rfm", "bad option",
         lambda d: (lambda X: dj.deep_rfm(X, y, **d(one_of(
             [{"depth": 0}, {"bandwidth": -2.0}, {"features": "sigmoid"}, {"kernel": "rbf"},
              {"weights": "normal"}, {"reg": -1.0}]))), (X,)), traceable=False)
    case("deep_rfm", "bad value in X",
         lambda d: (lambda X: dj.deep_rfm(X, y, depth=1, width=8),
                    (_poison(X, d(int_in(0, N)), d(int_in(0, D)), d(one_of(BAD_FLOATS))),)),
         traceable=False)
    case("prepare", "bad labels",
         lambda d: (lambda X: dj.prepare(X, d(one_of([Y, np.array(list("abc"))[y], y - 1]))), (X,)),
         traceable=False)
    case("prepare", "bad input_scale",
         lambda d: (lambda X: dj.prepare(X, y, input_scale=d(one_of([0.0, -1.0, np.nan]))), (X,)),
         traceable=False)
    return cases


CASES = _cases()
MODES = ("eager", "jit", "checked jit")
ALLOWED = {"eager": {"error", "nan"}, "jit": {"error", "nan"}, "checked jit": {"error", "checkify"}}
# NaN is the documented answer, eager and checked, only for rows: a kernel matrix and
# predictions take any rows, and a row holding a NaN or an infinity gives a NaN row
EAGER_NAN = {("kernel_matrix", "bad value in X"), ("predict", "bad value in X")}


def run_case(index: int, mode: str, draw) -> str:
    """The outcome of case ``index`` in ``mode`` with values from ``draw``."""
    make = CASES[index][2]
    fn, args = make(draw)
    if mode == "eager":
        return outcome(lambda: fn(*args))
    jitted = jax.jit(fn)
    return outcome(lambda: jitted(*args) if mode == "jit" else dj.checked(jitted)(*args))


PARAMS = [(i, mode) for i, (_, _, _, traceable) in enumerate(CASES) for mode in MODES
          if traceable or mode == "eager"]


@pytest.mark.slow
@pytest.mark.parametrize(("index", "mode"), PARAMS,
                         ids=[f"{CASES[i][0]}-{CASES[i][1]}-{m}".replace(" ", "_") for i, m in PARAMS])
@settings(max_examples=4, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_misuse_is_an_error_a_checked_error_or_the_documented_nan(index, mode, data):
    function, name = CASES[index][:2]
    got = run_case(index, mode, hypothesis_draw(data))
    allowed = ALLOWED[mode]
    if (function, name) in EAGER_NAN:  # NaN rows in, NaN rows out: checked or not
        allowed = allowed | {"nan"}
    elif mode == "eager":
        allowed = {"error"}
    assert got in allowed, f"{function}, {name}, {mode}: {got}"


if __name__ == "__main__":
    per_function: dict = collections.defaultdict(collections.Counter)
    for index, mode in PARAMS:
        rng = random.Random(1000 * index + MODES.index(mode))
        for _ in range(4):
            per_function[CASES[index][0]][run_case(index, mode, seeded_draw(rng))] += 1
    print("| function | cases | clear errors | checkify errors | documented NaN | silent |")
    print("|---|---|---|---|---|---|")
    total: collections.Counter = collections.Counter()
    for function, c in per_function.items():
        total.update(c)
        print(f"| {function} | {sum(c.values())} | {c['error']} | {c['checkify']} | {c['nan']} | "
              f"{c['silent']} |")
    print(f"| all | {sum(total.values())} | {total['error']} | {total['checkify']} | "
          f"{total['nan']} | {total['silent']} |")
