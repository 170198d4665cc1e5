"""Posterior collapse shown and cured, beside the papers: a sentence VAE with no cure, KL annealing, word dropout,
cyclical annealing and free bits, against the same decoder as a plain language model, on held-out fortunes.

    .venv/bin/python bench/text.py [--settings lm,vae,annealing,...] [--json PATH] [--out bench/runs/text]

Setting: ``--n`` fortunes quotations of at most 30 tokens (90% for training, 10% validation) and ``--n-test``
held out (seed 0), a ``--vocab-size`` word vocabulary; ``sequence_vae`` with a 32-D z, 64-D embeddings and 128
GRU units (``sequence_lm``: the same decoder, no z), Adam 1e-3, batch 32, the same epochs for every setting.
KL annealing is ``beta.name=linear`` from 0 to 1 over all of training (Bowman et al. 2016); word dropout is
``model.word_dropout``; cyclical annealing is ``beta.name=cyclical`` (Fu et al. 2019) at the paper's setting,
4 cycles with beta rising over the first half (ratio 0.5) of each; free bits is ``beta.name=free_bits`` (a KL
floor of ``--free-bits`` nats per dimension, Kingma et al. 2016). Cyclical annealing with free bits (Fu et al.'s
best row) is not here: ppvae refuses a beta schedule beside a KL-rewriting objective. Figures are on the test
sentences: per-token NLL from the IWAE bound with K = ``--num-samples`` (each sentence's words, punctuation marks
and end token), its perplexity, the ELBO's KL and active units (Burda et al. 2016), each setting's NLL over the
language model's, and training seconds.

The published anchor printed beside it is Optimus's table (Li et al. 2020, PTB, as cited in issue 28): LSTM-LM
perplexity 100.5; Bowman-style annealing KL 0.0 (collapsed); cyclical annealing KL 1.37 with 5 active units;
free bits (lambda 5) KL 6.54 with 32 active units. What carries over is the pattern (annealing collapses,
cyclical keeps some KL, free bits keeps most units active), not PTB's values; the script says which parts of the
pattern held.

Runs already in --out with the same spec are reused (the benchmark resumes; their training seconds are those
recorded when they trained).

CPU budget (the defaults): 1,600 fortunes (1,440 training, 160 validation), 400 test sentences, a 2,000-word
vocabulary, 8 epochs, IWAE K = 25, 2 torch threads; the seven settings in about 10 minutes on 2 cores. Measured
once at the defaults on 2 CPU cores that other processes (other benchmarks and test runs) shared throughout (load
average 6-8): 495 s wall (8.3 minutes), 48-61 s of training per setting and the rest evaluation:

    setting                      NLL/token     PPL     KL     AU  NLL/LM  train s   Optimus on PTB (the pattern)
    language model (no z)            4.284    72.5   0.00      -   1.000       48   LSTM-LM PPL 100.5
    VAE (no cure)                    4.299    73.6   0.22   0/32   1.004       57
    VAE + KL annealing               4.286    72.7   0.34   2/32   1.001       56   KL 0.00 (collapsed)
    VAE + word dropout 0.75          4.666   106.2   0.16   0/32   1.089       61
    VAE + annealing + wd 0.75        4.645   104.1   0.33  15/32   1.084       61
    VAE + cyclical annealing         4.306    74.1   0.27   0/32   1.005       56   KL 1.37, 5 AU
    VAE + free bits                  4.359    78.2   4.68  32/32   1.018       54   lambda 5: KL 6.54, 32 AU

Two parts of the pattern held: annealing collapses (KL 0.34 nats, 2 active units) and free bits keeps every unit
active (KL 4.68, at a 1.8% cost in NLL). The third did not: at this budget cyclical annealing ended collapsed like
the plain VAE (KL 0.27, no active unit), below plain annealing, not above it. One variation tried, 2 cycles
instead of 4 (``--cycles 2``: beta rising over 2 epochs instead of 1), collapsed the same way (KL 0.27, no active
unit). Likely too short: with 4 cycles in 8 epochs each rise of beta from 0 to 1 lasts one epoch (45 steps on
1,440 sentences), and the run ends a cycle at beta = 1 like the others; Optimus's PTB models train far longer.
Word dropout with annealing is the other cure that kept units active (15), at 8% in NLL, since word dropout
also handicaps the decoder; word dropout alone collapsed. No VAE's bound beats the language model here.

Settings (--settings): lm, vae, annealing, word-dropout, annealing+wd, cyclical, free-bits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from pathlib import Path

# Before torch loads its OpenMP runtime: threads that wait spinning make 2 torch threads on 2 cores that other
# processes share several times slower than 1 (a GRU step 0.10-0.16 s against 0.015 s, measured); waiting
# passively they are not (0.02 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import ppvae  # noqa: E402
from ppvae.apps.sweep import _finished  # noqa: E402
from ppvae.apps.text import text_metrics  # noqa: E402

LM = "lm"
#: key: (the row's name, the model's options, beta's spec or None); the key is what --settings names
SETTINGS = {
    LM: ("language model (no z)", {"name": "sequence_lm"}, None),
    "vae": ("VAE (no cure)", {}, {"name": "constant", "value": 1.0}),
    "annealing": ("VAE + KL annealing", {}, {"name": "linear", "start": 0.0, "value": 1.0}),
    "word-dropout": ("VAE + word dropout 0.75", {"word_dropout": 0.75}, {"name": "constant", "value": 1.0}),
    "annealing+wd": ("VAE + annealing + wd 0.75", {"word_dropout": 0.75},
                     {"name": "linear", "start": 0.0, "value": 1.0}),
    "cyclical": ("VAE + cyclical annealing", {}, {"name": "cyclical", "value": 1.0}),
    "free-bits": ("VAE + free bits", {}, {"name": "free_bits"}),
}
#: Optimus (Li et al. 2020), its language-modelling table on PTB, as cited in issue 28: the pattern to compare
ANCHOR = {LM: "LSTM-LM PPL 100.5", "annealing": "KL 0.00 (collapsed)", "cyclical": "KL 1.37, 5 AU",
          "free-bits": "lambda 5: KL 6.54, 32 AU"}
BENCH_FILE = "bench.json"


def spec_of(key: str, args) -> dict:
    _, model, beta = SETTINGS[key]
    spec = {"seed": 0, "device": "cpu",
            "data": {"name": "fortunes", "n": args.n, "n_test": args.n_test, "vocab_size": args.vocab_size},
            "model": {"name": "sequence_vae", "latent_dim": 32, "hidden": 128, **model},
            "train": {"epochs": args.epochs, "batch_size": 32, "figures": False}}
    if model.get("name") == "sequence_lm":
        spec["model"] = {"name": "sequence_lm", "hidden": 128}
    if beta is not None:
        beta = dict(beta)
        if beta["name"] == "linear":
            beta["warmup_epochs"] = args.epochs
        elif beta["name"] == "cyclical":
            beta.update(cycles=args.cycles, ratio=args.ratio)
        elif beta["name"] == "free_bits":
            beta["threshold"] = args.free_bits
        spec["beta"] = beta
    return spec


def run_one(key: str, args) -> dict:
    """Train (or reuse) one setting's run under ``args.out`` and measure it on the test sentences."""
    spec = spec_of(key, args)
    run_dir = Path(args.out) / key
    record = run_dir / BENCH_FILE
    saved = json.loads(record.read_text()) if record.is_file() else {}
    if saved.get("spec") == spec and _finished(run_dir):
        trained = saved["train_s"]
    else:
        if run_dir.exists():  # another setting's run, or an unfinished one: start it again
            shutil.rmtree(run_dir)
        start = time.perf_counter()
        ppvae.train_spec(spec, run_dir=run_dir, progress=False)
        trained = time.perf_counter() - start
        record.write_text(json.dumps({"spec": spec, "train_s": trained}, indent=2))
    run = ppvae.load_run(run_dir)
    m = text_metrics(run.model, run.data.test, num_samples=args.num_samples, progress=False)
    return {"setting": SETTINGS[key][0], "key": key, "nll_per_token": m["nll_per_token"], "ppl": m["perplexity"],
            "kl": m["kl"], "active_units": m["active_units"], "latent_dim": m["latent_dim"],
            "train_s": trained, "run_dir": str(run_dir)}


def table(rows: dict[str, dict]) -> str:
    """The measured rows, each beside the published anchor's figure for that setting, where it has one."""
    lines = [f"{'setting':<28}{'NLL/token':>10}{'PPL':>8}{'KL':>7}{'AU':>7}{'NLL/LM':>8}{'train s':>9}"
             f"   Optimus on PTB (the pattern)"]
    for key, r in rows.items():
        ratio = "" if r["nll_over_lm"] is None else f"{r['nll_over_lm']:.3f}"
        units = f"{r['active_units']}/{r['latent_dim']}" if r["latent_dim"] else "-"
        lines.append(f"{r['setting']:<28}{r['nll_per_token']:>10.3f}{r['ppl']:>8.1f}{r['kl']:>7.2f}{units:>7}"
                     f"{ratio:>8}{r['train_s']:>9.0f}   {ANCHOR.get(key, '')}".rstrip())
    return "\n".join(lines)


def pattern(rows: dict[str, dict]) -> list[str]:
    """Which parts of the published pattern held at this budget (only those whose rows ran)."""
    lines = []
    if "annealing" in rows:
        r = rows["annealing"]
        collapsed = r["kl"] < 0.5 or r["active_units"] <= 1
        lines.append(f"annealing collapses (KL < 0.5 or at most 1 active unit): "
                     f"{'held' if collapsed else 'did not hold'} (KL {r['kl']:.2f}, {r['active_units']} AU)")
    if "cyclical" in rows and "annealing" in rows:
        c, a = rows["cyclical"], rows["annealing"]
        lines.append(f"cyclical keeps more KL than annealing: {'held' if c['kl'] > a['kl'] else 'did not hold'} "
                     f"(KL {c['kl']:.2f} vs {a['kl']:.2f}, {c['active_units']} vs {a['active_units']} AU)")
    if "free-bits" in rows:
        f = rows["free-bits"]
        most = f["active_units"] > f["latent_dim"] / 2
        lines.append(f"free bits keeps most units active: {'held' if most else 'did not hold'} "
                     f"({f['active_units']} of {f['latent_dim']} AU, KL {f['kl']:.2f})")
    return lines


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated subset of {','.join(SETTINGS)} (default: all); the language model "
                        f"({LM}) is the reference of the NLL ratio")
    p.add_argument("--n", type=int, default=1600, help="fortunes for training and validation")
    p.add_argument("--n-test", type=int, default=400, help="held-out test sentences")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--vocab-size", type=int, default=2000)
    p.add_argument("--num-samples", type=int, default=25, help="IWAE K")
    p.add_argument("--cycles", type=int, default=4, help="cyclical annealing's cycles (Fu et al.: 4)")
    p.add_argument("--ratio", type=float, default=0.5, help="the part of each cycle where beta rises (Fu et al.: 0.5)")
    p.add_argument("--free-bits", type=float, default=0.25, help="free bits' KL floor per dimension, nats")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default="bench/runs/text")
    p.add_argument("--json", metavar="PATH", help="write the rows, the wall time and the setting as JSON")
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.settings.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SETTINGS]
    if unknown or not keys:
        p.error(f"--settings: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SETTINGS)}")
    args.keys = [k for k in SETTINGS if k in keys]  # the table's order
    return args


def main(argv=None) -> dict:
    """Run the settings, print the table and the anchor, write --json; return what --json holds."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    rows = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="posterior collapse")  # the table shows it, setting by setting
        for key in args.keys:
            rows[key] = r = run_one(key, args)
            print(f"{r['setting']:<28} NLL/token {r['nll_per_token']:.3f}  KL {r['kl']:.2f}  "
                  f"active {r['active_units']}  ({r['train_s']:.0f} s training)", flush=True)
    base = rows[LM]["nll_per_token"] if LM in rows else None
    for r in rows.values():
        r["nll_over_lm"] = r["nll_per_token"] / base if base else None
    wall = time.perf_counter() - wall
    setting = (f"fortunes: {args.n} sentences (90% training), {args.n_test} test, {args.vocab_size}-word vocabulary; "
               f"{args.epochs} epochs, batch 32, IWAE K = {args.num_samples}, {args.threads} torch threads; cyclical "
               f"{args.cycles} cycles ratio {args.ratio}, free bits {args.free_bits} nats/dim")
    print(f"\n{setting}")
    print(table(rows))
    print(f"wall {wall:.0f} s")
    for line in pattern(rows):
        print("pattern: " + line)
    result = {"rows": [{k: r[k] for k in ("setting", "nll_per_token", "ppl", "kl", "active_units", "latent_dim",
                                          "nll_over_lm", "train_s")} for r in rows.values()],
              "wall_s": wall, "setting": setting}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
