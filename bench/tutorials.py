"""Wall time of each tutorial at its full setting (what a student runs), against the runtime it states.

    .venv/bin/python bench/tutorials.py [tutorials/03_swapping_priors.ipynb ...] [--small]

Each notebook is executed top to bottom with nbclient in a fresh kernel and a scratch directory, one after
another, so the figures are comparable within one run. It prints the measured seconds, the runtime the notebook
states in its "Runtime: about N minute(s)" line, and their ratio; a ratio above 1 means the statement is not
true on this machine (run it on a quiet machine: concurrent jobs on the same cores inflate every figure).
``--small`` times the CI setting (PPVAE_TUTORIAL_SMALL=1) instead.

``--save-to docs/tutorials`` also writes each executed notebook, outputs and figures included, where the
documentation site renders it (myst-nb, never executing). Its code and prose stay those of ``tutorials/``
(tests/test_docs.py checks that, cell by cell); one added cell says where, when and from which commit it ran.
Only a notebook that ran without error is written, and only at the full setting.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
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


def git_commit() -> str:
    """The commit the notebooks ran at, with ``-dirty`` when the working tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance_cell(path: Path, seconds: float, commit: str):
    """The one cell the rendered copy adds: which file, which setting, where, when, at which commit, how long."""
    import ppvae

    when = datetime.date.today().isoformat()
    text = (f"*Rendered from `tutorials/{path.name}`, executed top to bottom at its full setting on {when} "
            f"({os.cpu_count()} CPU cores, {platform.machine()}, no GPU; ppvae {ppvae.__version__} at commit "
            f"`{commit}`) in {seconds / 60:.1f} minutes. The figures and numbers below are that run's (its progress "
            f"bars left out).*")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["ppvae"] = "provenance"
    return cell


#: tqdm's text bars redraw their line with a carriage return (and climb to an outer bar with ESC [A)
REDRAWN = re.compile(r"[\r\x1b]")
#: a tqdm bar's text: "name:  40%|████      | 2/5 [...]"
BAR = re.compile(r"\d+%\|.*\| *\d+/\d+")


def without_progress_bars(outputs: list) -> list:
    """A cell's outputs without the progress bars that the computations drew while they ran: tqdm's text bars on
    stderr (every line it redrew, and the line feeds it wrote around them) and its notebook widgets. Everything
    else, warnings included, is kept as it was printed; consecutive pieces of one stream are merged, as Jupyter
    shows them."""
    merged: list = []
    for out in outputs:
        data = out.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data and BAR.search("".join(data.get("text/plain", ""))):
            continue
        if out.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                and merged[-1].name == out.name:
            merged[-1].text += out.text
            continue
        merged.append(out)
    for out in merged:
        if out.output_type == "stream":
            lines = out.text.split("\n")  # not splitlines(): it would split at the bars' "\r" too
            bar = [bool(REDRAWN.search(line)) for line in lines]
            beside_bar = [line == "" and (i > 0 and bar[i - 1] or i + 1 < len(lines) and bar[i + 1])
                          for i, line in enumerate(lines)]
            out.text = "\n".join(line for line, b, s in zip(lines, bar, beside_bar, strict=True) if not (b or s))
    return [o for o in merged if o.output_type != "stream" or o.text.strip()]


def save_executed(nb, path: Path, out_dir: Path, seconds: float, commit: str) -> Path:
    """Write the executed notebook, its provenance cell after the title cell, ids kept as in the source, and no
    progress bars (their redraws would fill the page; no number is in them that the cells do not print)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = without_progress_bars(cell.outputs)
    nb.metadata.pop("widgets", None)  # the bars' widget state
    nb.cells.insert(1, provenance_cell(path, seconds, commit))
    nb.metadata["ppvae"] = {"source": f"tutorials/{path.name}", "commit": commit, "seconds": round(seconds, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    nbformat.write(nb, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "tutorials").glob("*.ipynb")))
    parser.add_argument("--small", action="store_true", help="time the small (CI) setting instead")
    parser.add_argument("--save-to", type=Path, metavar="DIR",
                        help="also write each executed notebook (full setting only), e.g. docs/tutorials")
    args = parser.parse_args(argv)
    if args.save_to and args.small:
        parser.error("--save-to writes the rendered tutorials, which are the full setting's; drop --small")
    commit = git_commit()

    if args.small:
        os.environ["PPVAE_TUTORIAL_SMALL"] = "1"
    else:
        os.environ.pop("PPVAE_TUTORIAL_SMALL", None)
    if args.save_to:  # the kernel's own backend (inline), as in Jupyter: plt.show() draws into the notebook
        os.environ.pop("MPLBACKEND", None)
    else:
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
        if args.save_to and not status:
            status = f"  -> {save_executed(nb, path.resolve(), args.save_to, seconds, commit)}"
        shown = f"{stated:7.0f}s" if stated else "    none"
        ratio = f"{seconds / stated:6.2f}" if stated and not args.small else "     -"
        print(f"{path.stem:36s} {seconds:8.1f}s {shown} {ratio}{status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
