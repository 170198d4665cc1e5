"""The landing page's picture: what the README's second command, ``ppvae train`` on the offline default, draws.

    .venv/bin/python docs/make_landing_figure.py          # about half a minute on 2 CPU cores

It runs that command as written (the default spec, its seed) into a scratch run directory and puts three of the
figures the run writes side by side in ``docs/_static/landing.png``: test digits above their reconstructions,
samples from the prior, and spherical interpolations between test digits. Nothing is drawn here that the run did
not draw itself.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET = HERE / "_static" / "landing.png"
#: the run's figure files (each titled by the run): reconstructions above, samples and interpolations below
PANELS = ("reconstructions.png", "samples.png", "interpolation_spherical.png")


def compose(images) -> None:
    """The first image across the top, the others side by side below it at one height."""
    top, *bottom = images
    aspect = [img.shape[1] / img.shape[0] for img in bottom]
    width = 10.0
    heights = [width / (top.shape[1] / top.shape[0]), width / sum(aspect)]
    fig = plt.figure(figsize=(width, sum(heights)))
    grid = fig.add_gridspec(2, len(bottom), height_ratios=heights, width_ratios=aspect, hspace=0.02, wspace=0.02)
    panels = [(fig.add_subplot(grid[0, :]), top)] + [(fig.add_subplot(grid[1, i]), img) for i, img in enumerate(bottom)]
    for ax, img in panels:
        ax.imshow(img)
        ax.axis("off")
    TARGET.parent.mkdir(exist_ok=True)
    fig.savefig(TARGET, dpi=150, bbox_inches="tight", pad_inches=0.05)


def main() -> int:
    ppvae = Path(sys.executable).with_name("ppvae")
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        subprocess.run([str(ppvae), "train", "--run-dir", str(run), "--quiet"], check=True, cwd=scratch)
        compose([mpimg.imread(run / "figures" / name) for name in PANELS])
    print(f"wrote {TARGET.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
