"""VAE, beta-VAE (beta 4), beta-TCVAE (TC weight 6) and FactorVAE (gamma 35) on the procedural dSprites, three
seeds each: every disentanglement metric (median and range over seeds) and the reconstruction, side by side.

    .venv/bin/python bench/disentanglement.py [--seeds 0 1 2] [--epochs 8] [--n 20000] [--models ...] [--out ...]

Setting: ``data.n`` dSprites images (default 20,000 of the 737,280, 80% for training), 10-D z, MLP encoder and
decoder 4096-400-10 / 10-400-4096, Bernoulli likelihood, Adam 1e-3, batch 128, the same epochs for every model. The
models differ only in the beta section: ``constant`` 1 (the ELBO), ``constant`` 4 (Higgins et al. 2017), ``tcvae``
with alpha = gamma = 1, beta = 6 and minibatch-weighted sampling (Chen et al. 2018); and FactorVAE (``model.name =
factor_vae``, Kim & Mnih 2018) adds gamma = 35 times a discriminator's estimate of the total correlation, the
discriminator (6 x 1000 leaky-ReLU units) trained by its own Adam (1e-4, betas 0.5, 0.9). Metrics are those of
``ppvae disentanglement`` at its default sample sizes except --num-votes (BetaVAE / FactorVAE points) and
--dci-train, smaller to fit the budget; each metric uses seed 0 of its own stream, so the spread is the models'.
Runs already in --out are reused (the benchmark resumes), so re-running only re-prints.

Locatello et al. (2019) found that random seeds and hyperparameters matter more for these scores than the choice
of model, and that no model is reliably better without supervision; read the ranges before the medians.

CPU budget: 2 cores; about 1.5 minutes of training and 1 minute of metrics per run at the defaults, so about
25 minutes for the nine runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import ppvae
from ppvae.apps.sweep import _finished
from ppvae.evaluate.disentanglement import DISENTANGLEMENT_FILE, disentanglement_report

MODELS = {"VAE": {"beta": {"name": "constant", "value": 1.0}},
          "beta-VAE (4)": {"beta": {"name": "constant", "value": 4.0}},
          "beta-TCVAE (6)": {"beta": {"name": "tcvae", "beta": 6.0}},
          "FactorVAE (35)": {"model": {"name": "factor_vae", "gamma": 35.0}}}
COLUMNS = ("val_recon", "val_kl", "val_tc", "beta_vae", "factor_vae", "mig", "dci_disentanglement",
           "dci_completeness", "dci_informativeness", "sap")


def run_one(name: str, seed: int, args) -> dict:
    run_dir = Path(args.out) / f"{name.split()[0]}-seed{seed}"
    spec = ppvae.spec.merge({"seed": seed, "device": args.device, "data": {"name": "dsprites", "n": args.n},
                             "model": {"name": "vae", "latent_dim": 10},
                             "train": {"epochs": args.epochs, "figures": False}}, MODELS[name])
    spec["model"]["latent_dim"] = 10
    start = time.perf_counter()
    if not _finished(run_dir):
        ppvae.train_spec(spec, run_dir=run_dir, progress=False)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    path = run_dir / DISENTANGLEMENT_FILE
    if path.is_file() and json.loads(path.read_text())["settings"]["num_votes"] == args.num_votes:
        scores = json.loads(path.read_text())
    else:
        scores = disentanglement_report(run_dir, figures=False, num_votes=args.num_votes, dci_train=args.dci_train)
    last = ppvae.load_run(run_dir).metrics[-1]
    return {"model": name, "seed": seed, **{k: last.get(k) for k in ("val_recon", "val_kl", "val_tc")},
            **scores["summary"], "train_s": trained, "metric_s": time.perf_counter() - start}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--num-votes", type=int, default=500)
    p.add_argument("--dci-train", type=int, default=1000)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                   help=f"which models (default: all of {', '.join(MODELS)})")
    p.add_argument("--out", default="bench/runs/disentanglement")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the rows and the summary to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()
    rows = []
    models = args.models
    for name in models:
        for seed in args.seeds:
            rows.append(run_one(name, seed, args))
            r = rows[-1]
            print(f"{name:<15} seed {seed}: recon {r['val_recon']:.1f}  MIG {r['mig']:.3f}  FactorVAE "
                  f"{r['factor_vae']:.3f}  ({r['train_s']:.0f} s training, {r['metric_s']:.0f} s metrics)", flush=True)
    print(f"\ndSprites ({args.n} images), {args.epochs} epochs, seeds {args.seeds}: median [min, max] over seeds")
    print(f"{'':<22}" + "".join(f"{name:>28}" for name in models))
    summary = {name: {} for name in models}
    for col in COLUMNS:
        cells = []
        for name in models:
            v = [r[col] for r in rows if r["model"] == name and r.get(col) is not None]
            if v:
                summary[name][col] = [statistics.median(v), min(v), max(v)]
            cells.append(f"{statistics.median(v):.3f} [{min(v):.3f}, {max(v):.3f}]" if v else "-")
        print(f"{col:<22}" + "".join(f"{c:>28}" for c in cells))
    if "VAE" in models:
        vae = statistics.median(r["val_recon"] for r in rows if r["model"] == "VAE")
        print("\nreconstruction error -log p(x|z) relative to the VAE's (ratio of medians): " + ", ".join(
            f"{name} {statistics.median(r['val_recon'] for r in rows if r['model'] == name) / vae:.3f}"
            for name in models))
    result = {"rows": rows, "summary": summary, "wall_s": time.time() - start,
              "setting": f"dSprites, {args.n} images drawn from the full factor grid, {args.epochs} epochs, seeds "
                         f"{args.seeds}, {args.device}"}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
