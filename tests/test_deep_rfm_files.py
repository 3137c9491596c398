"""A Deep RFM model in files; the deprecated methods that wrote and read them. (The
round trips of sharded models, custom feature maps, user kernels and a run's model folder
are with the model, in ``test_deep_rfm_model.py`` and ``test_no_silent_answers.py``.)"""

import numpy as np
import pytest

from dnc_jax import DeepRFM, deep_rfm, load_deep_rfm, save_deep_rfm
from dnc_jax.data import load_dataset, prepare


def test_the_deprecated_methods_save_and_load_as_the_functions(tmp_path):
    """``DeepRFM.save`` / ``DeepRFM.load`` (the model files moved to the shell's
    ``save_deep_rfm`` / ``load_deep_rfm``) warn and still write and read the same file."""
    X, y = load_dataset("digits")
    data = prepare(X[:120], y[:120])
    _, model = deep_rfm(data.X_train, data.y_train, depth=1, width=20, return_model=True,
                        preparation=data.standardization)
    old, new = str(tmp_path / "old.npz"), str(tmp_path / "new.npz")
    with pytest.warns(DeprecationWarning, match="save_deep_rfm") as saved:
        model.save(old)
    save_deep_rfm(model, new)
    with np.load(old) as a, np.load(new) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.warns(DeprecationWarning, match="load_deep_rfm") as loading:
        loaded = DeepRFM.load(old)
    assert saved[0].filename == loading[0].filename == __file__  # at the caller's line
    np.testing.assert_array_equal(np.asarray(loaded.predict(X[120:160], raw=True)),
                                  np.asarray(load_deep_rfm(new).predict(X[120:160], raw=True)))
