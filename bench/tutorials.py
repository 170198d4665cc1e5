"""Wall time of each tutorial at its full setting (what a student runs), against the runtime it states.

    .venv/bin/python bench/tutorials.py [tutorials/03_swapping_priors.ipynb ...] [--small]

Each notebook is executed top to bottom with nbclient in a fresh kernel and a scratch directory, one after
another, so the figures are comparable within one run. It prints the measured seconds, the runtime the notebook
states in its "Runtime: about N minute(s)" line, and their ratio; a ratio above 1 means the statement is not
true on this machine (run it on a quiet machine: concurrent jobs on the same cores inflate every figure).
``--small`` times the CI setting (PPVAE_TUTORIAL_SMALL=1) instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
STATED = re.compile(r"Runtime: about ([\d.]+) minutes?")


def stated_seconds(nb) -> float | None:
    for cell in nb.cells:
        m = STATED.search(cell.source)
        if m:
            return 60 * float(m.group(1))
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "tutorials").glob("*.ipynb")))
    parser.add_argument("--small", action="store_true", help="time the small (CI) setting instead")
    args = parser.parse_args(argv)

    if args.small:
        os.environ["PPVAE_TUTORIAL_SMALL"] = "1"
    else:
        os.environ.pop("PPVAE_TUTORIAL_SMALL", None)
    os.environ.setdefault("MPLBACKEND", "Agg")

    setting = "small" if args.small else "full"
    print(f"{'notebook':36s} {'measured':>9s} {'stated':>8s} {'ratio':>6s}  ({setting} setting, {os.cpu_count()} CPUs)")
    failed = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        stated = stated_seconds(nb)
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            try:
                nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                        resources={"metadata": {"path": scratch}}).execute()
                status = ""
            except Exception as e:  # report and go on: one broken notebook should not hide the others' times
                status = f"  FAILED: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
                failed += 1
            seconds = time.perf_counter() - start
        shown = f"{stated:7.0f}s" if stated else "    none"
        ratio = f"{seconds / stated:6.2f}" if stated and not args.small else "     -"
        print(f"{path.stem:36s} {seconds:8.1f}s {shown} {ratio}{status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
