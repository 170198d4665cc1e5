"""Posterior collapse shown and cured: a sentence VAE with and without KL annealing, word dropout and free bits,
against the same decoder as a plain language model, on held-out fortunes.

    .venv/bin/python bench/text.py [--n 4000] [--epochs 5] [--out bench/runs/text]

Setting: ``--n`` fortunes quotations of at most 30 tokens for training and 1,000 for testing (seed 0), a 5,000-
token word vocabulary; ``sequence_vae`` with a 32-D z, 64-D embeddings and 128 GRU units (``sequence_lm``: the
same decoder, no z), Adam 1e-3, batch 32, the same epochs for every setting. Annealing is ``beta.name=linear``
from 0 to 1 over all of training; word dropout is ``model.word_dropout``; free bits is
``beta.name=free_bits`` (a KL floor per dimension, Kingma et al. 2016). Figures are on the 1,000 test sentences:
per-token NLL from the IWAE bound with K = 100 (each sentence's words, punctuation marks and end token), its
perplexity, the ELBO's KL and active units (Burda et al. 2016), and each setting's NLL over the language model's.

Runs already in --out are reused (the benchmark resumes). CPU budget: 2 cores; measured at the defaults, 1 to 2
minutes of training per setting (5 minutes where other work shared the cores) and about a minute of IWAE
evaluation each: about 16 minutes for the six.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import ppvae
from ppvae.apps.sweep import _finished
from ppvae.apps.text import ratio_table, text_metrics

ANNEAL = {"name": "linear", "start": 0.0, "value": 1.0}
SETTINGS = {
    "language model (no z)": ({"name": "sequence_lm"}, None),
    "VAE": ({}, {"name": "constant", "value": 1.0}),
    "VAE + annealing": ({}, ANNEAL),
    "VAE + word dropout 0.75": ({"word_dropout": 0.75}, {"name": "constant", "value": 1.0}),
    "VAE + annealing + wd 0.75": ({"word_dropout": 0.75}, ANNEAL),
    "VAE + free bits 0.25": ({}, {"name": "free_bits", "threshold": 0.25}),
}


def run_one(name: str, args) -> dict:
    model, beta = SETTINGS[name]
    run_dir = Path(args.out) / name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "")
    spec = {"seed": 0, "device": "cpu",
            "data": {"name": "fortunes", "n": args.n, "n_test": 1000, "vocab_size": args.vocab_size},
            "model": {"name": "sequence_vae", "latent_dim": 32, "hidden": 128, **model},
            "train": {"epochs": args.epochs, "batch_size": 32, "figures": False}}
    if model.get("name") == "sequence_lm":
        spec["model"] = {"name": "sequence_lm", "hidden": 128}
    if beta is not None:
        beta = dict(beta)
        if beta["name"] == "linear":
            beta["warmup_epochs"] = args.epochs
        spec["beta"] = beta
    start = time.perf_counter()
    if not _finished(run_dir):
        ppvae.train_spec(spec, run_dir=run_dir, progress=False)
    trained = time.perf_counter() - start
    run = ppvae.load_run(run_dir)
    return {**text_metrics(run.model, run.data.test, num_samples=args.num_samples), "train_s": trained}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--vocab-size", type=int, default=5000)
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--out", default="bench/runs/text")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = {}
    for name in SETTINGS:
        rows[name] = run_one(name, args)
        r = rows[name]
        print(f"{name:<28} NLL/token {r['nll_per_token']:.3f}  KL {r['kl']:.2f}  active {r['active_units']}  "
              f"({r['train_s']:.0f} s training)", flush=True)
    print(f"\nfortunes: {args.n} training and 1,000 test sentences, {args.epochs} epochs, IWAE K = {args.num_samples}")
    print(ratio_table(rows, "language model (no z)"))


if __name__ == "__main__":
    main()
