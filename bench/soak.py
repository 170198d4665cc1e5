"""A short soak: 1,000 epochs of a tiny model, a checkpoint every epoch, a kill -9 every 50 epochs and a resume.

    .venv/bin/python bench/soak.py [--epochs 1000] [--kill-every 50]

The run trains the stock VAE (latent 4, one hidden layer of 32) on 256 of scikit-learn's 8x8 digits, batch 64,
in a subprocess (``ppvae train``). Whenever the checkpoint reaches the next multiple of ``--kill-every`` epochs
the process is killed with SIGKILL at once, wherever it is (mid-epoch, mid-write), and ``ppvae train --resume``
starts the next one. At the end the final weights are compared with an uninterrupted run of the same spec
(they must be equal, bit for bit). It reports:

- wall time of the interrupted run and of the uninterrupted one, side by side (the ratio is the cost of the
  restarts: each process pays the imports and setup again);
- checkpoint size at the first kill and at the end (it grows only by the metrics rows);
- resident memory of each process, sampled after its first 10 epochs and just before it is killed: the growth
  within a process is what would leak.

CPU budget: 2 cores, about 2.5 minutes at the defaults.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ppvae.inference.checkpoint import CHECKPOINT, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SETS = ["data.name=digits", "data.limit_train=256", "data.limit_test=64", "model.latent_dim=4", "encoder.hidden=[32]",
        "decoder.hidden=[32]", "train.batch_size=64", "train.figures=false", "device=cpu", "seed=1"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _epoch(run: Path) -> int:
    """The checkpoint's epoch, read from metrics.csv (written right after it; cheap to poll)."""
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--kill-every", type=int, default=50)
    args = p.parse_args()
    sets = [a for s in [*SETS, f"train.epochs={args.epochs}"] for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        run, whole = Path(tmp) / "soak", Path(tmp) / "whole"
        start = time.perf_counter()
        processes, first_size = [], None
        while _epoch(run) < args.epochs:
            argv = ["--resume", str(run)] if (run / CHECKPOINT).exists() else [*sets, "--run-dir", str(run)]
            child = subprocess.Popen([sys.executable, "-m", "ppvae", "train", *argv, "--quiet"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            begin = _epoch(run)
            target = min(args.epochs, (begin // args.kill_every + 1) * args.kill_every)
            early = late = None
            while child.poll() is None:
                done = _epoch(run)
                if early is None and done >= begin + 10:
                    early = _rss_mb(child.pid)
                if done >= target and target < args.epochs:
                    late = _rss_mb(child.pid)
                    child.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.01)
            child.wait()
            if child.returncode not in (0, -signal.SIGKILL):
                raise SystemExit(f"training failed:\n{child.stderr.read()[-2000:]}")
            processes.append((begin, _epoch(run), early, late))
            if first_size is None and (run / CHECKPOINT).exists():
                first_size = (run / CHECKPOINT).stat().st_size
        soak_seconds = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ppvae", "train", *sets, "--run-dir", str(whole), "--quiet"], env=env,
                       check=True, capture_output=True)
        whole_seconds = time.perf_counter() - start
        a, b = load_checkpoint(run / CHECKPOINT), load_checkpoint(whole / CHECKPOINT)
        same = all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        end_size = (run / CHECKPOINT).stat().st_size
    growth = [late - early for _, _, early, late in processes if early is not None and late is not None]
    print(f"{args.epochs} epochs, a kill -9 every {args.kill_every}: {len(processes)} processes, "
          f"{len(processes) - 1} kills")
    print(f"{'run':<28} {'wall s':>8} {'ratio':>6}")
    print(f"{'uninterrupted':<28} {whole_seconds:>8.1f} {1.0:>6.2f}")
    print(f"{'killed and resumed':<28} {soak_seconds:>8.1f} {soak_seconds / whole_seconds:>6.2f}")
    print(f"final weights equal to the uninterrupted run's: {same}")
    print(f"checkpoint size: {first_size / 1024:.1f} KiB after the first epochs, {end_size / 1024:.1f} KiB at the end")
    if growth:
        print(f"resident memory growth within a process (10 epochs in -> at its kill), MB: min {min(growth):.1f}, "
              f"median {sorted(growth)[len(growth) // 2]:.1f}, max {max(growth):.1f} over {len(growth)} processes")


if __name__ == "__main__":
    main()
