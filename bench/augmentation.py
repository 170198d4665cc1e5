"""What class-conditional samples are worth to a classifier trained on few labels.

    .venv/bin/python bench/augmentation.py [--k 10 50 200] [--seeds 0 1 2] [--synthetic-per-class 500]

For each k and seed: k labelled Fashion-MNIST training images per class (a balanced seeded choice). A CVAE
(ppvae's defaults, 784-400 MLPs, 20-D z, conditional prior) is trained on those k x 10 images only, so the
generator sees no label and no image the classifier does not; ``synthesize`` then draws
``--synthetic-per-class`` samples E[x | z, y] of every class. The same classifier (MLP 784-400-10, Adam 1e-3,
2,000 steps of 64, weight decay 1e-4) is trained twice: on the real images alone (real), and with half of each
batch drawn from the synthetic ones (real+synthetic). Both are scored on the 10,000 test images. It prints,
for each k, the mean and sd over the seeds of each arm's test accuracy and of their difference, and the CPU
seconds spent.

CPU budget: 2 cores; about 15 s per (k, seed) for the CVAE and the two classifiers, ~3 minutes for the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

import ppvae
from ppvae.apps.augment import synthesize
from ppvae.data import load_dataset
from ppvae.evaluate.classify import accuracy, train_classifier

CVAE_STEPS = 1500


def one(k: int, seed: int, per_class: int, test) -> tuple[float, float]:
    data = load_dataset("fashion-mnist", labels_per_class=k, label_seed=seed, keep_unlabeled=False, limit_test=100)
    model = ppvae.CVAE(data.event_shape, 10, 20, prior="conditional")
    epochs = math.ceil(CVAE_STEPS / math.ceil(len(data.train) / 64))
    ppvae.train(model, data, epochs=epochs, batch_size=64, seed=seed, device="cpu", progress=False, figures=False)
    synthetic = synthesize(model, per_class, seed=seed)
    x, y = data.train, data.train_labels
    real = train_classifier(x, y, 10, steps=2000, weight_decay=1e-4, seed=seed)
    both = train_classifier(x, y, 10, steps=2000, weight_decay=1e-4, seed=seed, extra=synthetic)
    return accuracy(real, *test), accuracy(both, *test)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[10, 50, 200], help="real labelled images per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--synthetic-per-class", type=int, default=500)
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    wall, result = time.time(), {"rows": []}
    full = load_dataset("fashion-mnist")
    test = (full.test, full.test_labels)
    start = time.process_time()
    print(f"Fashion-MNIST test accuracy (10,000 images), {len(args.seeds)} seeds; synthetic: "
          f"{args.synthetic_per_class} CVAE samples per class, half of each batch")
    print(f"{'k':>4}  {'real':>15}  {'real+synthetic':>15}  {'difference':>15}")
    for k in args.k:
        rows = [one(k, seed, args.synthetic_per_class, test) for seed in args.seeds]
        result["rows"] += [{"k": k, "seed": seed, "real": r[0], "real_synthetic": r[1]}
                           for seed, r in zip(args.seeds, rows)]

        def cell(values):
            values = [100 * v for v in values]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):6.2f} +- {sd:4.2f}"

        print(f"{k:>4}  {cell([r[0] for r in rows]):>15}  {cell([r[1] for r in rows]):>15}  "
              f"{cell([r[1] - r[0] for r in rows]):>15}", flush=True)
    print(f"CPU seconds: {time.process_time() - start:.0f} (process time, 2 threads)")
    result.update(wall_s=time.time() - wall, setting=f"Fashion-MNIST, k in {args.k} labelled images per class, "
                  f"{len(args.seeds)} seeds, {args.synthetic_per_class} synthetic per class, CPU")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    return result


if __name__ == "__main__":
    main()
