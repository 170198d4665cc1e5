"""M2 against a supervised-only classifier of the same architecture, both from the same few labels.

    .venv/bin/python bench/semi_supervised.py [--labels-per-class 10] [--seeds 0 1 2] [--epochs 10]

For each seed: 100 labels (10 per class, a balanced seeded choice) of Fashion-MNIST's 60,000 training images.
(m2) M2 trained on all 60,000 images, the other 59,900 unlabelled, with its label summed out by TraceEnum_ELBO
(ppvae's defaults: 784-400 MLPs, 20-D z, alpha = 50, a quarter of each batch of 128 labelled); the test accuracy
of its classifier q(y | x). (sup) the same network as q(y | x) (MLP 784-400-10) trained on the 100 labelled
images alone (Adam 1e-3, 2,000 steps of 64, weight decay 1e-4). Both are scored on the 10,000 test images.
It prints each seed's accuracies, then mean and sd of each arm and of the difference, and the CPU seconds of
each arm. For reference, Kingma et al. (2014) report 11.97% test error for M2 with 100 MNIST labels after far
longer training (their M1+M2 stack: 3.33%); Fashion-MNIST is the harder set.

CPU budget: 2 cores; about 6 minutes per M2 seed at 10 epochs (~35 s an epoch), seconds for the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.evaluate.classify import accuracy, train_classifier


def m2_accuracy(k: int, seed: int, epochs: int, run_dir: str) -> float:
    spec = {"seed": seed, "device": "cpu", "model": {"name": "m2"},
            "data": {"name": "fashion-mnist", "labels_per_class": k, "label_seed": seed},
            "train": {"epochs": epochs, "figures": False}}
    run = ppvae.train_spec(spec, run_dir=run_dir, progress=False)
    data = run.data
    with torch.no_grad():
        predicted = torch.cat([run.model.classify(data.test[s:s + 2000]) for s in range(0, len(data.test), 2000)])
    return float((predicted.argmax(-1) == data.test_labels).float().mean())


def supervised_accuracy(k: int, seed: int) -> float:
    data = load_dataset("fashion-mnist", labels_per_class=k, label_seed=seed, keep_unlabeled=False)
    net = train_classifier(data.train, data.train_labels, 10, steps=2000, weight_decay=1e-4, seed=seed)
    return accuracy(net, data.test, data.test_labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels-per-class", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(2)
    k = args.labels_per_class
    rows, cpu = [], {"m2": 0.0, "sup": 0.0}
    print(f"Fashion-MNIST, {10 * k} labels ({k} per class), test accuracy on 10,000 images; M2 {args.epochs} epochs")
    print(f"{'seed':>4}  {'M2':>7}  {'supervised':>10}  {'difference':>10}")
    for seed in args.seeds:
        t = time.process_time()
        with tempfile.TemporaryDirectory() as d:
            m2 = m2_accuracy(k, seed, args.epochs, f"{d}/m2")
        cpu["m2"] += time.process_time() - t
        t = time.process_time()
        sup = supervised_accuracy(k, seed)
        cpu["sup"] += time.process_time() - t
        rows.append((m2, sup))
        print(f"{seed:>4}  {100 * m2:6.2f}%  {100 * sup:9.2f}%  {100 * (m2 - sup):+9.2f}", flush=True)

    def mean_sd(values):
        values = [100 * v for v in values]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    for name, values in (("M2", [r[0] for r in rows]), ("supervised", [r[1] for r in rows]),
                         ("difference", [r[0] - r[1] for r in rows])):
        m, s = mean_sd(values)
        print(f"{name:>10}: {m:6.2f}% +- {s:.2f} (mean +- sd over {len(rows)} seeds)")
    print(f"CPU seconds: M2 {cpu['m2']:.0f}, supervised {cpu['sup']:.0f} (process time, 2 threads)")


if __name__ == "__main__":
    main()
