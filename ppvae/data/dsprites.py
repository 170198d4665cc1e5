r"""A procedural re-creation of dSprites (Matthey et al. 2017): 64x64 binary images with known factors.

The factor grid is dSprites' own: shape 3 (square, ellipse, heart), scale 6 (0.5 to 1), orientation 40 (0 to
2 pi, endpoint excluded), position x 32 and y 32 (0 to 1): 737,280 combinations. :func:`render` draws any rows of
factor indices, so metrics can sample observations for chosen factors without holding the whole set.

How a sprite is drawn: each pixel centre (u, v) is taken relative to the sprite's centre, rotated by minus the
orientation and divided by ``RADIUS * scale`` pixels, then tested against a shape in unit coordinates: the square
max(|u|, |v|) <= 0.8; the ellipse u^2 + (v / 0.5)^2 <= 1; the heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 with
(x, y) = (1.25 u, -1.25 v + 0.2) (the classic implicit heart, point down). The centre moves over
[MARGIN, 1 - MARGIN] of the image as the position goes from 0 to 1, so every sprite stays inside the frame.
Pixels are 1 inside the shape and 0 outside: the images are deterministic functions of the factors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..registry import DATASETS, int_option
from .dataset import Dataset, split_arrays

SIZE, RADIUS, MARGIN = 64, 10.0, 0.2
FACTORS = ("shape", "scale", "orientation", "position_x", "position_y")
LEVELS = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
COMBINATIONS = math.prod(LEVELS)  # 737,280


def factor_values(factors: torch.Tensor) -> dict[str, torch.Tensor]:
    """The values the factor indices stand for: scale in [0.5, 1], orientation in [0, 2 pi), positions in [0, 1]."""
    f = factors.long()
    return {"shape": f[:, 0], "scale": 0.5 + 0.1 * f[:, 1], "orientation": 2 * math.pi * f[:, 2] / LEVELS[2],
            "position_x": f[:, 3] / (LEVELS[3] - 1), "position_y": f[:, 4] / (LEVELS[4] - 1)}


def check_factors(factors: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(factors)
    if f.ndim != 2 or f.shape[1] != len(FACTORS):
        raise ValueError(f"dSprites factors are rows of {len(FACTORS)} indices ({', '.join(FACTORS)}), got shape "
                         f"{tuple(f.shape)}")
    if f.is_floating_point() or bool(((f < 0) | (f >= torch.tensor(LEVELS))).any()):
        raise ValueError(f"dSprites factor indices must be integers below {LEVELS} ({', '.join(FACTORS)})")
    return f.long()


def render(factors, chunk: int = 4096) -> torch.Tensor:
    """Images (N, 1, 64, 64) in {0, 1} (float32) for rows of factor indices (N, 5)."""
    f = check_factors(factors)
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    out = []
    for start in range(0, len(f), chunk):
        v = factor_values(f[start:start + chunk])
        cx = SIZE * (MARGIN + (1 - 2 * MARGIN) * v["position_x"])
        cy = SIZE * (MARGIN + (1 - 2 * MARGIN) * v["position_y"])
        dx = coords.view(1, 1, SIZE) - cx.view(-1, 1, 1)      # (n, 1, W): columns
        dy = coords.view(1, SIZE, 1) - cy.view(-1, 1, 1)      # (n, H, 1): rows
        c, s = torch.cos(v["orientation"]).view(-1, 1, 1), torch.sin(v["orientation"]).view(-1, 1, 1)
        r = (RADIUS * v["scale"]).view(-1, 1, 1)
        u, w = (c * dx + s * dy) / r, (-s * dx + c * dy) / r   # rotated by minus the orientation
        square = torch.maximum(u.abs(), w.abs()) <= 0.8
        ellipse = u.square() + (w / 0.5).square() <= 1
        x, y = 1.25 * u, -1.25 * w + 0.2
        heart = (x.square() + y.square() - 1) ** 3 - x.square() * y ** 3 <= 0
        shape = v["shape"].view(-1, 1, 1)
        img = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))
        out.append(img.float().unsqueeze(1))
    return torch.cat(out)


def all_factors() -> torch.Tensor:
    """Every combination, (737280, 5), in dSprites' order (the last factor fastest)."""
    return torch.cartesian_prod(*[torch.arange(k) for k in LEVELS])


@DATASETS.register("dsprites")
def dsprites(*, n: int = 20000, seed: int = 0, test_fraction: float, split_seed: int) -> Dataset:
    """``n`` of the 737,280 dSprites combinations drawn without replacement with ``seed``, rendered; labels are the
    (N, 5) factor indices (shape, scale, orientation, position x, position y)."""
    n = int_option(n, 2, "data.n (images to render)")
    if n > COMBINATIONS:
        raise ValueError(f"data.n = {n} is more than the {COMBINATIONS} dSprites combinations")
    pick = torch.randperm(COMBINATIONS, generator=torch.Generator().manual_seed(int(seed)))[:n]
    factors = torch.stack([(pick // math.prod(LEVELS[i + 1:])) % LEVELS[i] for i in range(len(LEVELS))], 1)
    data = split_arrays(render(factors), factors, "dsprites", f"procedural dSprites ({n} of "
                                                              f"{COMBINATIONS}, seed {seed})",
                        test_fraction, split_seed)
    return replace(data, factor_names=list(FACTORS), factor_sizes=LEVELS, render=render)
