"""SMILES against SELFIES: the same sequence VAE, MOSES subset and CPU budget, 10,000 samples each, with MOSES's
metrics side by side.

    .venv/bin/python bench/molecules.py [--n 20000] [--epochs 12] [--samples 10000] [--out bench/runs/molecules]

Setting: ``--n`` molecules of MOSES's training set and 2,000 of its test set, drawn with seed 0 (the same
molecules for both representations), tokenized as SMILES (regular expression) or SELFIES; ``sequence_vae`` at its
defaults (56-D z, bidirectional GRU encoder and GRU decoder with 256 units, 64-D token embeddings), Adam 1e-3,
batch 128, KL annealing (``beta.name=linear`` from 0 to ``--beta`` over the first half of training, as MOSES's
VAE anneals to 0.05). Samples are drawn from the prior and decoded by sampling at temperature 1; reconstruction
is greedy decoding of the posterior mean of 1,000 test molecules. Novelty is against the training subset the
model saw (MOSES counts novelty against its whole training set, which these runs did not see).

Anchors (MOSES leaderboard, Polykovskiy et al. 2020, models trained for days on a GPU on all 1.58M molecules):
the SMILES VAE reaches validity 0.977, unique@10k 0.998, novelty 0.695; JTN-VAE validity 1.0, novelty 0.914.
ppvae's target for the SELFIES VAE: validity 1.0 (by construction), unique@10k >= 0.99, novelty >= 0.9.

CPU budget: 2 cores; about 45 s per epoch of 20,000 molecules, so about 9 minutes of training and under a minute
of metrics per representation at the defaults, about 20 minutes in all. Runs already in --out are reused (the
benchmark resumes), so re-running only re-measures the samples.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import ppvae
from ppvae.apps.molecules import molecule_metrics
from ppvae.apps.sweep import _finished

REPRESENTATIONS = ("smiles", "selfies")
ANCHORS = {"MOSES SMILES VAE": {"validity": 0.977, "unique@10k": 0.998, "novelty": 0.695},
           "MOSES JTN-VAE": {"validity": 1.0, "novelty": 0.914}}
ROWS = ("validity", "unique@1k", "unique@10k", "novelty", "internal_diversity", "reconstruction_accuracy",
        "val_elbo", "val_kl")  # unique@k only where k valid molecules were drawn; else unique@<valid>, said per run


def run_one(representation: str, args) -> dict:
    run_dir = Path(args.out) / representation
    spec = {"seed": 0, "device": args.device,
            "data": {"name": "moses", "n": args.n, "representation": representation},
            "beta": {"name": "linear", "start": 0.0, "value": args.beta, "warmup_epochs": max(1, args.epochs // 2)},
            "train": {"epochs": args.epochs, "figures": False}}
    start = time.perf_counter()
    if not _finished(run_dir):
        ppvae.train_spec(spec, run_dir=run_dir, progress=False)
    trained = time.perf_counter() - start
    run = ppvae.load_run(run_dir)
    start = time.perf_counter()
    scores = molecule_metrics(run.model, run.data, args.samples, seed=0)
    scores.pop("_samples"), scores.pop("_properties")
    (run_dir / "molecules.json").write_text(json.dumps(scores, indent=2))
    last = run.metrics[-1]
    return {**scores, "val_elbo": last["val_elbo"], "val_kl": last["val_kl"], "train_s": trained,
            "metric_s": time.perf_counter() - start}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--beta", type=float, default=0.1, help="the KL weight annealed to (default 0.1)")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--out", default="bench/runs/molecules")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    wall = time.time()
    results = {}
    for rep in REPRESENTATIONS:
        results[rep] = run_one(rep, args)
        r = results[rep]
        unique = "  ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("unique@"))
        print(f"{rep}: validity {r['validity']:.3f}  {unique}  novelty {r['novelty']:.3f}  "
              f"({r['train_s']:.0f} s training, {r['metric_s']:.0f} s metrics)", flush=True)
    print(f"\nMOSES subset of {args.n} training molecules, {args.epochs} epochs, beta annealed 0 -> {args.beta}, "
          f"{args.samples} samples each")
    print(f"{'':<26}{'SMILES':>10}{'SELFIES':>10}{'SELFIES/SMILES':>16}")
    for row in ROWS:
        a, b = results["smiles"].get(row, math.nan), results["selfies"].get(row, math.nan)
        ratio = f"{b / a:.3f}" if a == a and a and b == b else "-"
        print(f"{row:<26}{a:>10.3f}{b:>10.3f}{ratio:>16}")  # nan: too few valid molecules for the named metric
    for prop in results["smiles"]["property_wasserstein"]:
        a, b = results["smiles"]["property_wasserstein"][prop], results["selfies"]["property_wasserstein"][prop]
        print(f"{'W1 ' + prop + ' vs test':<26}{a:>10.3f}{b:>10.3f}{b / a if a else float('nan'):>16.3f}")
    print("\nanchors (MOSES leaderboard): " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v}" for k, v in values.items()) for name, values in ANCHORS.items()))
    result = {"results": results, "wall_s": time.time() - wall,
              "setting": f"MOSES subset of {args.n} training molecules, {args.epochs} epochs, beta annealed 0 -> "
                         f"{args.beta}, {args.samples} samples, {args.device}"}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
