"""One process's rows of a dataset, read without the rest."""

import numpy as np
import pytest

from dnc_jax.data import feature_statistics, load_dataset, load_dataset_rows
from dnc_jax.experiments.common import load_prepared
from dnc_jax.process_data import allgather, global_statistics, load_process_data
from dnc_jax.sharding import DATA, data_mesh, local_block, put_local_rows, put_rows


@pytest.mark.parametrize("name,split,n", [("mnist_shifted", "train", 300),
                                          ("mnist_shifted", "train", None),
                                          ("mnist_shifted", "test", 90),
                                          ("digits", "train", 200)])
def test_rows_equal_the_slices_of_the_whole_dataset(name, split, n):
    X, y = load_dataset(name, split, n, seed=4)
    for start, stop in ((0, 7), (37, 131), (len(y) - 5, len(y) + 3), (len(y), len(y) + 2)):
        Xr, yr, total = load_dataset_rows(name, split, n, lambda t, a=start, b=stop: (a, b),
                                          seed=4)
        assert total == len(y) and Xr.dtype == np.float32 and yr.dtype == np.int64
        np.testing.assert_array_equal(Xr, X[start:stop])
        np.testing.assert_array_equal(yr, y[start:stop])
    with pytest.raises(ValueError, match="n=|has only"):
        load_dataset_rows(name, split, 10**7, lambda t: (0, 1))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_rows_are_read_without_the_rest(tmp_path, monkeypatch, save):
    """An ``.npz`` file's features are read at the rows asked for (also across the train /
    test boundary of ``"all"``, from a compressed file, and from a column-major array),
    equal to the slices of the whole split; the whole feature array is never loaded."""
    X, y = load_dataset("digits", "train", 120)
    Xt, yt = load_dataset("digits", "test", 30)
    path = str(tmp_path / "features.npz")
    save(path, X_train=X.reshape(120, 8, 8), y_train=y, X_test=np.asfortranarray(Xt),
         y_test=yt)
    whole = {"train": (X, y), "test": (Xt, yt), "first": (X[:100], y[:100]),
             "all": (np.concatenate([X, Xt]), np.concatenate([y, yt]))}
    loaded = []
    getitem = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: (loaded.append(key), getitem(self, key))[1])
    for split, n, (start, stop) in (("train", None, (7, 61)), ("all", None, (110, 140)),
                                    ("test", None, (3, 12)), ("train", 100, (90, 130)),
                                    ("all", None, (150, 152))):
        Xr, yr, total = load_dataset_rows(path, split, n, lambda t, a=start, b=stop: (a, b))
        Xw, yw = whole["first" if n else split]
        assert total == len(yw) and Xr.dtype == np.float32
        np.testing.assert_array_equal(Xr, Xw[start:stop])
        np.testing.assert_array_equal(yr, yw[start:stop])
    assert "X_train" not in loaded  # read row by row from the file, never whole
    with pytest.raises(ValueError, match="has 120 samples"):
        load_dataset_rows(path, "train", 121, lambda t: (0, 1))


def test_shifted_mnist_builds_only_the_rows_asked_for(monkeypatch):
    import dnc_jax.data.augmented as augmented

    built = []
    shift = augmented.shift_image
    monkeypatch.setattr(augmented, "shift_image",
                        lambda images, dy, dx: (built.append(len(images)), shift(images, dy, dx))[1])
    load_dataset_rows("mnist_shifted", "train", 50_000, lambda total: (1000, 1250))
    assert sum(built) == 250


def test_tfds_rows_are_read_by_index(monkeypatch):
    """A tensorflow-datasets split (a stand-in source here) is read at the rows asked for."""
    read = []

    class Source:
        def __len__(self):
            return 30

        def __getitem__(self, i):
            read.append(i)
            return {"image": np.full((2, 2, 1), i, np.uint8), "label": i % 3}

    class FakeTfds:
        @staticmethod
        def data_source(name, split, data_dir, download):
            return Source()

    monkeypatch.setattr("dnc_jax.data.tfds_reader._import_tfds", lambda: FakeTfds)
    X, y, total = load_dataset_rows("mnist", "train", 20, lambda t: (8, 14))
    assert total == 20 and read == list(range(8, 14))
    np.testing.assert_array_equal(X[:, 0], np.arange(8, 14))
    assert y.tolist() == [2, 0, 1, 2, 0, 1]
    X, y, _ = load_dataset_rows("mnist", "train", 20, lambda t: (20, 22))  # all padding
    assert X.shape == (0, 4) and y.shape == (0,)
    with pytest.raises(ValueError, match="has only 30"):
        load_dataset_rows("mnist", "train", 31, lambda t: (0, 1))


@pytest.mark.parametrize("options", [None, {"test_statistics": "own"},
                                     {"standardize_features": False, "num_classes": 12}])
def test_process_data_equals_the_prepared_data(options):
    mesh = data_mesh("all")
    whole = load_prepared("mnist_shifted", 402, 101, None, 3, options)
    mine = load_process_data("mnist_shifted", 402, 101, None, 3, options, False, mesh)
    assert mine.X_train.data.sharding.spec[0] == DATA and mine.X_train.data.shape == (404, 784)
    np.testing.assert_array_equal(mine.X_train.valid(), whole.X_train)
    np.testing.assert_array_equal(mine.X_test.valid(), whole.X_test)
    assert not np.asarray(mine.X_train.data)[402:].any()  # padding rows stay zero
    np.testing.assert_array_equal(mine.y_train, whole.y_train)
    np.testing.assert_array_equal(mine.y_test, whole.y_test)
    assert mine.num_classes == whole.num_classes


def test_process_data_refuses_what_needs_every_row():
    mesh = data_mesh("all")
    for options, message in (({"sort_by_class": True}, "sort_by_class cannot"),
                             ({"balanced": True}, "balanced cannot"),
                             ({"test_statistics": "mine"}, "test_statistics must"),
                             ({"centre": True}, "Unknown preparation")):
        with pytest.raises(ValueError, match=message):
            load_process_data("digits", 100, 50, None, 0, options, False, mesh)


def test_statistics_gathers_and_blocks_in_one_process(rng):
    X = rng.standard_normal((37, 5)) * 3 + 1
    for got, want in zip(global_statistics(X, 37), feature_statistics(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    values = np.array([1.0 + 2**-40, 7.0])
    assert allgather(values).shape == (1, 2) and allgather(values)[0, 0] == values[0]
    mesh = data_mesh("all")
    rows = put_rows(X.astype(np.float32), mesh)
    block = local_block(rows)  # one process holds every (padded) row
    np.testing.assert_array_equal(block, np.asarray(rows))
    np.testing.assert_array_equal(np.asarray(put_local_rows(block, mesh, 37)), np.asarray(rows))
