"""The two commands issue 25 times end to end, each as a user runs it (a fresh ``python -m ppvae`` process, module
imports included), on one device:

  1. the README's main job, ``ppvae train`` on the offline default (100 epochs of the 784-400-20 VAE on 3,600 MNIST
     digits): the wall time of the whole command, and the training time the command itself reports (after
     start-up: imports, data, model). Target on one H100/H200: under 3 s after start-up.
  2. ``ppvae evaluate -k 100`` of a conv-net Fashion-MNIST run (``encoder.name = decoder.name = "conv"``, trained
     here for ``--conv-epochs`` on ``--conv-train`` rows first, untimed): the wall time of the whole command.
     Target on one H100/H200: under 5 s over the 10,000 test examples.

    .venv/bin/python bench/end_to_end.py [--device cuda] [--max-examples N] [--json FILE]

The evaluation's cost does not depend on how well the run trained, only on the network, the examples and K, so
the conv run trains briefly. CPU budget (2 cores): about 30 s for the default train, about 1 minute for the conv
run's training, and the evaluation scales with --max-examples (``--max-examples 200``: about 20 s); run it on a
quiet machine. It prints each figure beside its target and the seconds, and writes them to --json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"train": 3.0, "evaluate": 5.0}  # seconds on one H100/H200, from issue 25


def ppvae(*args: str) -> tuple[float, str]:
    """Run ``python -m ppvae ARGS`` in a fresh process: (wall seconds, its output); a failure stops the bench with
    the command's last lines."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ppvae", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise SystemExit(f"`ppvae {' '.join(args)}` failed (exit {done.returncode}):\n{tail}")
    return seconds, done.stdout + done.stderr


def reported_training_seconds(output: str) -> float:
    """The seconds of 'trained N epochs (...) in X s' that ``ppvae train`` prints."""
    found = re.search(r"trained \d+ epochs? .*? in ([0-9.]+)s", output)
    if not found:
        raise SystemExit(f"`ppvae train` did not say how long it trained; its output ended:\n{output[-500:]}")
    return float(found.group(1))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--max-examples", type=int, default=None,
                        help="evaluate the first N test examples (default: all 10,000)")
    parser.add_argument("--conv-train", type=int, default=10000, help="training rows of the conv run (default 10000)")
    parser.add_argument("--conv-epochs", type=int, default=1, help="epochs of the conv run (default 1)")
    parser.add_argument("--train-epochs", type=int, default=None,
                        help="epochs of the default train (default: the README's, 100)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    for name in ("max_examples", "conv_train", "conv_epochs", "train_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = ["--set", f"train.epochs={args.train_epochs}"] if args.train_epochs else []
        wall, out = ppvae("train", "--quiet", "--run-dir", str(tmp / "default"), "--set", f"device={args.device}",
                          *extra)
        rows.append({"what": "ppvae train (the README's main job)", "target": "train", "wall_s": wall,
                     "after_start_up_s": reported_training_seconds(out)})
        ppvae("train", "--quiet", "--run-dir", str(tmp / "conv"), "--set", f"device={args.device}",
              "--set", "data.name=fashion-mnist", "--set", "encoder.name=conv", "--set", "decoder.name=conv",
              "--set", f"data.limit_train={args.conv_train}", "--set", f"train.epochs={args.conv_epochs}",
              "--set", "train.figures=false")
        limit = ["--max-examples", str(args.max_examples)] if args.max_examples else []
        wall, out = ppvae("evaluate", str(tmp / "conv"), "-k", "100", "--device", args.device, "--quiet", *limit)
        report = json.loads((tmp / "conv" / "report.json").read_text())
        rows.append({"what": f"ppvae evaluate -k 100, conv Fashion-MNIST, {report['num_examples']} examples",
                     "target": "evaluate", "wall_s": wall, "after_start_up_s": None})
    print(f"device {args.device}; targets are for one H100/H200 (issue 25)")
    print(f"{'command':<62}{'wall s':>9}{'after start-up s':>18}{'target s':>10}")
    for row in rows:
        after = f"{row['after_start_up_s']:.1f}" if row["after_start_up_s"] is not None else "-"
        print(f"{row['what']:<62}{row['wall_s']:>9.1f}{after:>18}{TARGETS[row['target']]:>10.1f}")
    result = {"device": args.device, "rows": rows, "targets_s": TARGETS,
              "setting": {k: v for k, v in vars(args).items() if k != "json"}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
