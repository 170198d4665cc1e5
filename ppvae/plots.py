"""
Figures for inspecting a trained VAE: sample and reconstruction grids, latent
interpolations and training curves.

Why one module of some 800 lines: it is a flat list of independent figure functions that share only the grid
and saving helpers at the top; a reader looks for a figure by name, and ``ppvae.plots`` is the one place to
find each of them (what computes the numbers behind a figure lives in ``ppvae.evaluate``).

Every function builds a :class:`matplotlib.figure.Figure` directly rather than
going through :mod:`matplotlib.pyplot`, so no global figure state is touched,
nothing needs closing, and no interactive backend is ever required (saving
falls back to Agg). Each function returns the figure, which renders inline in
notebooks, and additionally writes a PNG when ``path`` is given.

Data conventions: a batch ``x`` has shape ``(N, *event_shape)``. Images are
``(N, C, H, W)`` with ``C`` in ``{1, 3}`` and values in ``[0, 1]``. Flat data
``(N, D)`` is shown as ``sqrt(D) x sqrt(D)`` grayscale images when ``D`` is a
perfect square (e.g. flattened MNIST) and as a heat map otherwise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

__all__ = [
    "image_grid",
    "plot_interpolation",
    "plot_reconstructions",
    "plot_samples",
    "plot_training_curve",
    "plot_traversals",
    "plot_manifold",
    "plot_latent_scatter",
    "plot_class_grid",
    "plot_roc_curves",
    "plot_inpainting",
    "plot_score_histograms",
    "plot_confusion_matrix",
    "plot_khat_histogram",
]

PathLike = str | os.PathLike

_DPI = 120
# Grey separators stay visible on both dark (MNIST) and light backgrounds.
_PAD_VALUE = 0.5
_INCHES_PER_CELL = 1.0
_MAX_INCHES = 14.0


def _to_cpu(x: torch.Tensor) -> torch.Tensor:
    """Detach, move to CPU and cast to float so plotting never touches autograd or GPU."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    return x.detach().cpu().float()


def _as_images(x: torch.Tensor) -> torch.Tensor | None:
    """
    Interpret a batch as images.

    :param torch.Tensor x: batch of shape ``(N, C, H, W)``, ``(N, H, W)`` or
        ``(N, D)``.
    :returns: a CPU float tensor of shape ``(N, C, H, W)`` clamped to
        ``[0, 1]``, or ``None`` when ``x`` is flat data with a non-square
        feature dimension (to be drawn as a heat map instead).
    :raises ValueError: if ``x`` has an unsupported shape.
    """
    x = _to_cpu(x)
    if x.dim() == 4:
        if x.size(1) not in (1, 3):
            raise ValueError(
                f"expected images of shape (N, C, H, W) with C in {{1, 3}}, got {tuple(x.shape)}"
            )
        images = x
    elif x.dim() == 3:
        images = x.unsqueeze(1)  # (N, H, W) grayscale
    elif x.dim() == 2:
        side = math.isqrt(x.size(1))
        # A single feature is a "1x1 image" only formally; a heat map is more honest.
        if side < 2 or side * side != x.size(1):
            return None
        images = x.reshape(x.size(0), 1, side, side)
    else:
        raise ValueError(
            f"expected a batch of shape (N, C, H, W), (N, H, W) or (N, D), got {tuple(x.shape)}"
        )
    return images.clamp(0.0, 1.0)


def _save(fig: Figure, path: PathLike | None) -> None:
    """Write ``fig`` as a PNG to ``path`` (creating parent directories) if a path is given."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")


def tile(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """(3, H', W'): ``(N, C, H, W)`` images tiled ``nrow`` to a row with ``padding`` pixels of ``pad_value``
    around each, grey images repeated to three channels (torchvision's ``make_grid`` layout, without importing
    torchvision, which brings torch's compiler stack with it)."""
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(n, 3, h, w)
    if n == 1:  # one image is drawn as it is, as make_grid does
        return images[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = images.new_full((3, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = r * (h + padding) + padding, q * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[k, :3]
    return grid


def _text_size(text: str, size="large") -> tuple[float, float]:
    """(width, height) in inches of ``text`` (its lines as drawn) at font size ``size`` (points, or a name such as
    "large", the titles' size), measured by Agg's font metrics."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=size)
    widths = [RendererAgg(1, 1, 72).get_text_width_height_descent(line, prop, ismath=False)[0]
              for line in text.split("\n")]
    return max(widths) / 72, 1.2 * prop.get_size_in_points() * len(widths) / 72  # matplotlib's line spacing 1.2


def _wrap(text: str, width: float, size="large") -> str:
    """``text`` broken at spaces into lines at most ``width`` inches wide at font size ``size``, so a long title
    or label wraps inside its figure instead of running off its edges (a word longer than a line stays whole)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            longer = f"{line} {word}" if line else word
            if line and _text_size(longer, size)[0] > width:
                lines.append(line)
                line = word
            else:
                line = longer
        lines.append(line)
    return "\n".join(lines)


def _grid_figure(images: torch.Tensor, nrow: int, title: str | None, *, columns: list[str] | None = None,
                 xlabel: str | None = None, rows: list[str] | None = None,
                 ylabel: str | None = None) -> tuple[Figure, Axes]:
    """Tile ``(N, C, H, W)`` images with :func:`tile` and draw them on a fresh figure, with optional labels under
    each column (``columns``) and beside each row (``rows``) of the grid. The title and labels are wrapped to the
    figure, and the figure grows by the room they take, so none runs off its edges."""
    nrow = max(1, min(nrow, images.size(0)))
    grid = tile(images, nrow=nrow, padding=2, pad_value=_PAD_VALUE)  # (3, Hg, Wg)
    height_px, width_px = grid.shape[1:]

    # Size the figure by cell count so small (8x8) and large (64x64) images both stay legible.
    width = min(max(nrow * _INCHES_PER_CELL, 3.0), _MAX_INCHES)
    height = width * height_px / width_px
    if height > _MAX_INCHES:
        width, height = width * _MAX_INCHES / height, _MAX_INCHES
    # Text around the grid, each with the room it takes (inches) beyond the grid itself.
    left = below = 0.0
    above = 0.1
    if title:
        title = _wrap(title, width - 0.2)
        above += 0.2 + _text_size(title)[1]
    if columns is not None:
        columns = [_wrap(c, 0.95 * width / nrow, "small") for c in columns]
        below += 0.1 + max(_text_size(c, "small")[1] for c in columns)
    if xlabel:
        xlabel = _wrap(xlabel, width - 0.2, "medium")
        below += 0.1 + _text_size(xlabel, "medium")[1]
    if rows is not None:
        left += 0.15 + max(_text_size(r, "small")[0] for r in rows)
    if ylabel:
        ylabel = _wrap(ylabel, height - 0.1, "medium")
        left += 0.1 + _text_size(ylabel, "medium")[1]
    # constrained layout pads each side of the axes by about 0.05 inch: added, so the grid keeps its width
    fig = Figure(figsize=(width + left + 0.1, height + above + below), layout="constrained")
    ax = fig.subplots()
    # Nearest-neighbour keeps individual pixels crisp when the grid is upscaled.
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest", vmin=0.0, vmax=1.0)
    _strip_axes(ax)
    cell_h, cell_w = images.shape[-2] + 2, images.shape[-1] + 2  # an image and tile's padding
    if columns is not None:
        ax.set_xticks([2 + cell_w * (k + 0.5) - 1 for k in range(len(columns))], columns, fontsize="small")
    if rows is not None:
        ax.set_yticks([2 + cell_h * (k + 0.5) - 1 for k in range(len(rows))], rows, fontsize="small")
    if columns is not None or rows is not None:
        ax.tick_params(length=0)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return fig, ax


def _strip_axes(ax: Axes) -> None:
    """Remove ticks and spines but keep the axes so labels can still be attached."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _heatmap_figure(
    rows: torch.Tensor, title: str | None, ylabel: str = "example"
) -> tuple[Figure, Axes]:
    """Draw an ``(N, D)`` matrix as a heat map with one row per example and a colorbar."""
    n, d = rows.shape
    width = min(max(0.25 * d + 2.0, 5.0), 10.0)
    height = min(max(0.25 * n + 1.5, 2.5), 10.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    # aspect="auto" because D and N are unrelated scales; raw values are kept (no clamping).
    im = ax.imshow(rows.numpy(), aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="value")
    ax.set_xlabel("feature")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(_wrap(title, width - 2.5))  # the axes' width: the colorbar and the labels take the rest
    return fig, ax


def image_grid(
    x: torch.Tensor,
    nrow: int = 8,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """
    Show a batch as a grid of images, or as a heat map for non-image flat data.

    :param torch.Tensor x: batch of shape ``(N, C, H, W)`` or ``(N, D)``.
    :param int nrow: number of images per grid row.
    :param str title: optional figure title.
    :param path: optional file path; if given the figure is saved there as PNG.
    :returns: the figure.
    :rtype: ~matplotlib.figure.Figure
    """
    if len(x) == 0:
        raise ValueError("image_grid got an empty batch (N = 0); nothing to show")
    images = _as_images(x)
    if images is None:
        fig, _ = _heatmap_figure(_to_cpu(x), title)
    else:
        fig, _ = _grid_figure(images, nrow, title)
    _save(fig, path)
    return fig


def plot_samples(x: torch.Tensor, nrow: int = 8, path: PathLike | None = None,
                 title: str = "Prior samples") -> Figure:
    """
    Show samples drawn from the generative model's prior.

    :param torch.Tensor x: decoded samples of shape ``(N, *event_shape)``.
    :param int nrow: number of images per grid row.
    :param path: optional PNG output path.
    :param str title: figure title (``ppvae sample --label`` names the class).
    :rtype: ~matplotlib.figure.Figure
    """
    return image_grid(x, nrow=nrow, title=title, path=path)


def plot_reconstructions(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    path: PathLike | None = None,
    n: int = 8,
) -> Figure:
    """
    Show the first ``n`` inputs in the top row and their reconstructions directly below.

    :param torch.Tensor x: inputs of shape ``(N, *event_shape)``.
    :param torch.Tensor x_rec: reconstructions; must have as many elements per
        example as ``x`` (a flattened ``(N, D)`` decoder output is reshaped).
    :param path: optional PNG output path.
    :param int n: number of input/reconstruction pairs to show.
    :rtype: ~matplotlib.figure.Figure
    """
    x, x_rec = _to_cpu(x), _to_cpu(x_rec)
    n = min(n, x.size(0), x_rec.size(0))
    if n < 1:
        raise ValueError("plot_reconstructions needs at least one input and reconstruction")
    x, x_rec = x[:n], x_rec[:n]
    if x_rec.shape[1:] != x.shape[1:]:
        # Decoders often emit flat vectors for image data; accept them if the sizes agree.
        if x_rec[0].numel() != x[0].numel():
            raise ValueError(
                f"reconstructions of shape {tuple(x_rec.shape)} do not match inputs "
                f"of shape {tuple(x.shape)}"
            )
        x_rec = x_rec.reshape(x.shape)

    title = "Inputs (top) and reconstructions (bottom)"
    images = _as_images(torch.cat([x, x_rec]))
    if images is None:
        fig, ax = _heatmap_figure(torch.cat([x, x_rec]), title, ylabel="input | reconstruction")
        # Mark the boundary between the input block and the reconstruction block.
        ax.axhline(n - 0.5, color="white", linewidth=2)
    else:
        # nrow=n puts all inputs in one row and each reconstruction right under its input.
        fig, _ = _grid_figure(images, nrow=n, title=title)
    _save(fig, path)
    return fig


def plot_interpolation(
    strips: torch.Tensor,
    path: PathLike | None = None,
    title: str = "Latent interpolation",
    columns: list[str] | None = None,
    xlabel: str | None = "start \u2192 end",
    rows: list[str] | None = None,
    ylabel: str | None = None,
) -> Figure:
    """
    Show decoded points along latent paths, one row per pair of endpoints.

    :param torch.Tensor strips: tensor of shape ``(n_pairs, n_steps, *event_shape)``;
        row ``i`` runs left to right from the start to the end of path ``i``.
    :param path: optional PNG output path.
    :param str title: figure title.
    :param list columns: optional label under each of the ``n_steps`` columns (image data).
    :param str xlabel: caption under the grid (image data), or ``None`` for none.
    :param list rows: optional label beside each of the ``n_pairs`` rows (image data).
    :param str ylabel: optional caption beside the rows (image data).
    :rtype: ~matplotlib.figure.Figure
    :raises ValueError: if ``strips`` does not have at least 3 dimensions, or the labels do not match its
        rows and columns.
    """
    strips = _to_cpu(strips)
    if strips.dim() < 3:
        raise ValueError(
            "expected strips of shape (n_pairs, n_steps, *event_shape), "
            f"got a {strips.dim()}-d tensor of shape {tuple(strips.shape)}"
        )
    n_pairs, n_steps = strips.shape[:2]
    if n_pairs < 1 or n_steps < 1:
        raise ValueError(f"strips has no pairs or no steps: shape {tuple(strips.shape)}")
    for labels, count, what in ((columns, n_steps, "columns"), (rows, n_pairs, "rows")):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{len(labels)} labels of {what} for the {count} {what} of strips {tuple(strips.shape)}")
    flat = strips.reshape(n_pairs * n_steps, *strips.shape[2:])

    images = _as_images(flat)
    if images is None:
        if flat.dim() != 2:
            raise ValueError(
                f"cannot display event shape {tuple(strips.shape[2:])}; expected "
                "(C, H, W), (H, W) or (D,)"
            )
        fig, ax = _heatmap_figure(flat, title, ylabel="pair / step (top to bottom)")
        # Flat data has no left-to-right layout, so paths are stacked and separated by lines.
        for i in range(1, n_pairs):
            ax.axhline(i * n_steps - 0.5, color="white", linewidth=2)
    else:
        fig, _ = _grid_figure(images, nrow=n_steps, title=title, columns=columns, xlabel=xlabel, rows=rows,
                              ylabel=ylabel)
    _save(fig, path)
    return fig


def _column(metrics: list[dict], key: str) -> list[float | None]:
    """Extract ``key`` from every row, with ``None`` where it is missing."""
    values = []
    for row in metrics:
        value = row.get(key)
        values.append(None if value is None else float(value))
    return values


def _plot_if_present(
    ax: Axes, epochs: list[float], values: list[float | None], **kwargs
) -> None:
    """
    Plot the recorded points of a series, skipping epochs where it is missing.

    Test metrics are often evaluated only every few epochs; dropping the gaps
    (rather than plotting NaN) joins those points into one line. A series with
    no points at all is not drawn, so the legend only lists real curves.
    """
    points = [(e, v) for e, v in zip(epochs, values) if v is not None and not math.isnan(v)]
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, **kwargs)


def plot_training_curve(metrics: list[dict], path: PathLike | None = None) -> Figure:
    """
    Plot per-epoch training diagnostics in three panels: ELBO, its two terms, and beta.

    :param list metrics: one dict per epoch with keys ``"epoch"``,
        ``"train_elbo"``, ``"val_elbo"``, ``"train_recon"``, ``"train_kl"``
        and ``"beta"``. The held-out entries (``val_*``, or ``test_*`` for runs
        without a validation split) may be missing or ``None``; other keys are
        ignored. All ELBO quantities are per example, in nats.
    :param path: optional PNG output path.
    :rtype: ~matplotlib.figure.Figure
    """
    if not metrics:
        raise ValueError("plot_training_curve needs at least one row of metrics")
    from .inference.writer import held_out_split

    h = held_out_split(metrics)
    epochs = [float(row.get("epoch", i + 1)) for i, row in enumerate(metrics)]
    # Markers make a single-epoch run (a one-point "curve") visible.
    style = dict(marker="o", markersize=4)

    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    ax_elbo, ax_terms, ax_beta = fig.subplots(1, 3)

    _plot_if_present(ax_elbo, epochs, _column(metrics, "train_elbo"), label="train", **style)
    _plot_if_present(ax_elbo, epochs, _column(metrics, f"{h}_elbo"), label=h, **style)
    ax_elbo.set_title("ELBO")
    ax_elbo.set_ylabel("ELBO per example (nats)")

    recon_color, kl_color = "C2", "C3"
    _plot_if_present(
        ax_terms, epochs, _column(metrics, "train_recon"), label="reconstruction (train)",
        color=recon_color, **style,
    )
    _plot_if_present(
        ax_terms, epochs, _column(metrics, "train_kl"), label="KL (train)",
        color=kl_color, **style,
    )
    # Held-out terms are drawn dashed in matching colours when the trainer recorded them.
    _plot_if_present(
        ax_terms, epochs, _column(metrics, f"{h}_recon"), label=f"reconstruction ({h})",
        color=recon_color, linestyle="--", **style,
    )
    _plot_if_present(
        ax_terms, epochs, _column(metrics, f"{h}_kl"), label=f"KL ({h})",
        color=kl_color, linestyle="--", **style,
    )
    ax_terms.set_title("ELBO terms")
    ax_terms.set_ylabel("nats per example")

    _plot_if_present(ax_beta, epochs, _column(metrics, "beta"), color="C4", label="\u03b2", **style)
    ax_beta.set_title("KL weight")
    ax_beta.set_ylabel("\u03b2")
    # Capacity-controlled KL (Burgess et al. 2018) logs its target C in nats: a second axis, same panel.
    capacity = _column(metrics, "capacity")
    if any(v is not None for v in capacity):
        ax_cap = ax_beta.twinx()
        _plot_if_present(ax_cap, epochs, capacity, color="C5", linestyle="--", **style)
        ax_cap.set_ylabel("capacity C (nats, dashed)")

    single_epoch = len(set(epochs)) == 1
    for ax in (ax_elbo, ax_terms, ax_beta):
        ax.set_xlabel("epoch")
        if single_epoch:
            # The integer locator gives fractional ticks on a degenerate range; pin one tick.
            ax.set_xlim(epochs[0] - 1.0, epochs[0] + 1.0)
            ax.set_xticks([epochs[0]])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_traversals(grid: torch.Tensor, dims: list[int], kls: list[float] | None = None,
                    path: PathLike | None = None, span: float = 3.0) -> Figure:
    """
    Latent traversals: row ``i`` decodes z with dimension ``dims[i]`` swept from ``-span`` to ``+span``
    (the others held fixed), so each row shows what one latent unit controls.

    :param torch.Tensor grid: ``(len(dims), n_steps, *event_shape)``.
    :param list dims: the latent dimension of each row (ordered by KL, largest first, by the caller).
    :param list kls: optional KL of each row's dimension, in nats, shown in the title beside its name.
    """
    order = "by KL, largest first" if kls is not None else "as given"
    rows = [f"z{d} ({kl:.2f} nats)" for d, kl in zip(dims, kls)] if kls is not None else [f"z{d}" for d in dims]
    if _as_images(_to_cpu(grid).flatten(0, 1)) is None:  # a heat map has no rows of images to label: the title
        return plot_interpolation(grid, path=path, title=f"Latent traversals, {-span:g} to {span:g}; rows "
                                                         f"({order}): {', '.join(rows)}")
    return plot_interpolation(grid, path=path, title=f"Latent traversals, {-span:g} to {span:g}, one dimension "
                                                     f"per row ({order})", rows=rows,
                              xlabel=f"each row's dimension from {-span:g} to {span:g}, the others held fixed")


def plot_manifold(images: torch.Tensor, n: int, path: PathLike | None = None) -> Figure:
    """The decoded 2-D latent manifold: an ``n x n`` grid of decodings over the prior's quantiles."""
    return image_grid(images, nrow=n, title="Latent manifold (2-D latent, grid of prior quantiles)", path=path)


def plot_latent_scatter(points, labels=None, title: str = "Latent space", path: PathLike | None = None,
                        xlabel: str = "z0", ylabel: str = "z1") -> Figure:
    """A scatter of 2-D latent codes (the latent itself when 2-D, else a projection), coloured by label."""
    points = _to_cpu(torch.as_tensor(points)).numpy()
    fig = Figure(figsize=(6.0, 5.2), layout="constrained")
    ax = fig.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
    else:
        labels = _to_cpu(torch.as_tensor(labels)).numpy()
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, s=6, alpha=0.8, cmap="tab10")
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _save(fig, path)
    return fig


def plot_class_grid(grid: torch.Tensor, classes: list[str] | None = None,
                    path: PathLike | None = None) -> Figure:
    """
    Class-conditional samples: row ``c`` is class ``c``; each column holds one latent draw fixed while the class
    changes, so a column shows one style across the classes.

    :param torch.Tensor grid: ``(num_classes, columns, *event_shape)``.
    :param list classes: optional class names, one per row (default: the class numbers).
    """
    grid = _to_cpu(grid)
    c, cols = grid.shape[:2]
    names = list(classes) if classes is not None else [str(k) for k in range(c)]
    images = _as_images(grid.reshape(c * cols, *grid.shape[2:]))
    if images is None:
        fig, ax = _heatmap_figure(grid.reshape(c * cols, -1), "Class-conditional samples", ylabel="class / draw")
    else:
        fig, ax = _grid_figure(images, nrow=cols, title="Class-conditional samples: rows are classes, columns share z",
                               xlabel="the same latent draw down each column", rows=names)
    _save(fig, path)
    return fig


def plot_confusion_matrix(matrix, classes: list[str] | None = None, title: str = "Confusion matrix",
                          path: PathLike | None = None) -> Figure:
    """
    A confusion matrix: rows are the true classes, columns the predicted ones, each cell the share of its row
    (counts written in the cells).

    :param matrix: ``(C, C)`` counts.
    :param list classes: optional class names.
    """
    counts = np.asarray(matrix, dtype=float)
    c = counts.shape[0]
    names = list(classes) if classes is not None else [str(k) for k in range(c)]
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    width = max(1.0 + 0.55 * c, 4.0)
    fig = Figure(figsize=(width, 0.8 + 0.5 * c), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, label="share of the true class")
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize="x-small",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(c), names, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(c), names, fontsize="small")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(_wrap(title, width - 2.2))  # the axes' width: the colorbar and the class names take the rest
    _save(fig, path)
    return fig


def plot_inpainting(x: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, path: PathLike | None = None,
                    title: str = "Inpainting") -> Figure:
    """Rows of (observed, filled, truth) for each example, each column labelled; the hidden pixels of the observed
    image are grey."""
    observed = torch.where(mask, x, torch.full_like(x, _PAD_VALUE))
    strips = torch.stack([observed, filled, x], 1)
    return plot_interpolation(strips, path=path, title=title, xlabel=None,
                              columns=["observed (hidden pixels grey)", "filled", "truth"])


def plot_roc_curves(curves: dict, path: PathLike | None = None) -> Figure:
    """ROC curves of anomaly scores: ``{score: (fpr, tpr, auroc)}``, with the chance diagonal."""
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.subplots()
    for name, (fpr, tpr, auroc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("false-positive rate (normal flagged)")
    ax.set_ylabel("true-positive rate (anomalies flagged)")
    ax.set_title("Anomaly scores: ROC")
    ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_score_histograms(normal: dict, anomalous: dict, path: PathLike | None = None) -> Figure:
    """One histogram per score, normal against anomalous examples (higher = more anomalous)."""
    names = list(normal)
    fig = Figure(figsize=(4.0 * len(names), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        a, b = np.asarray(normal[name]), np.asarray(anomalous[name])
        bins = np.histogram_bin_edges(np.r_[a, b], bins=40)
        ax.hist(a, bins=bins, alpha=0.6, label="normal", density=True)
        ax.hist(b, bins=bins, alpha=0.6, label="anomalous", density=True)
        ax.set_title(name)
        ax.set_xlabel("score (higher = more anomalous)")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_khat_histogram(khat, threshold: float = 0.7, path: PathLike | None = None) -> Figure:
    """Histogram of PSIS k-hat over examples, with the 0.7 reliability threshold (Yao et al. 2018).

    Non-finite values (ArviZ's inf where k-hat is undefined, e.g. all weights equal) are left out and counted
    in the title.
    """
    k = _to_cpu(torch.as_tensor(khat)).numpy().ravel()
    undefined = int((~np.isfinite(k)).sum())
    k = k[np.isfinite(k)]
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if k.size:
        ax.hist(k, bins=40, color="C0", alpha=0.8)
    ax.axvline(threshold, color="C3", linestyle="--", label=f"k-hat = {threshold}")
    share = f"{100 * float((k > threshold).mean()):.1f}%" if k.size else "-"
    note = f"; {undefined} undefined, not shown" if undefined else ""
    ax.set_title(_wrap(f"PSIS k-hat per example: {share} above {threshold}{note}", 5.0))  # the axes' width
    ax.set_xlabel("k-hat")
    ax.set_ylabel("examples")
    ax.legend()
    _save(fig, path)
    return fig


def plot_kl_decomposition(metrics: list[dict], path: PathLike | None = None) -> Figure:
    """The held-out KL split into index-code mutual information, total correlation and dimension-wise KL per epoch
    (``val_mi``, ``val_tc``, ``val_dim_kl`` of ``metrics.csv``, or ``test_*`` for runs without a validation split;
    Chen et al. 2018), stacked: the top line is their sum, the sampled KL."""
    from .inference.writer import held_out_split

    h = held_out_split(metrics)
    rows = [r for r in metrics if r.get(f"{h}_tc") not in (None, "")]
    if not rows:
        raise ValueError("plot_kl_decomposition needs metrics with val_mi, val_tc and val_dim_kl")
    epochs = [float(r["epoch"]) for r in rows]
    parts = [(f"{h}_mi", "index-code MI"), (f"{h}_tc", "total correlation"), (f"{h}_dim_kl", "dimension-wise KL")]
    values = np.array([[float(r[k]) for r in rows] for k, _ in parts])
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.stackplot(epochs, np.clip(values, 0, None), labels=[label for _, label in parts], alpha=0.8)
    ax.plot(epochs, values.sum(0), color="black", marker="o", markersize=3, label="sum (sampled KL)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"nats per example ({h})")
    ax.set_title("KL decomposition (stratified estimator)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if len(set(epochs)) > 1:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)
    return fig


def plot_mutual_information(matrix, factor_names: list[str], path: PathLike | None = None,
                            title: str = "Normalized mutual information I(z_i; v_k) / H(v_k)") -> Figure:
    """The (code dimensions x factors) matrix of normalized mutual information as a heat map, 0 to 1."""
    m = np.asarray(matrix, dtype=float)
    fig = Figure(figsize=(1.2 * m.shape[1] + 2.5, 0.35 * m.shape[0] + 1.8), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-9, min(1.0, float(m.max()))))
    for (i, k), v in np.ndenumerate(m):
        ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.5 * m.max() else "black")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(m.shape[1]), factor_names, rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]), [f"z{i}" for i in range(m.shape[0])])
    ax.set_xlabel("factor")
    ax.set_ylabel("code dimension")
    ax.set_title(title, fontsize="medium")
    _save(fig, path)
    return fig


def plot_factor_traversals(grid: torch.Tensor, dims: list[int], factors: list[str], mi: list[float],
                           path: PathLike | None = None, span: float = 3.0) -> Figure:
    """Latent traversals with each row labelled by the factor its dimension is most informative about."""
    return plot_interpolation(grid, path=path, title=f"Latent traversals, {-span:g} to {span:g} about one test code",
                              xlabel=f"each row's dimension from {-span:g} to {span:g}, the others held fixed",
                              rows=[f"z{d}: {f} ({m:.2f})" for d, f, m in zip(dims, factors, mi)],
                              ylabel="dimension: most informative factor (normalized MI)")


def geometric(values) -> bool:
    """Whether swept values form a geometric grid (0.25, 1, 4, 16; 1, 2, 4, 8; 1, 3, 10, 30), to be drawn on a log
    axis: at least three distinct positive numbers whose consecutive ratios agree within 25%. Two values, numbers
    spaced evenly (1, 2, 3, 4) and anything else are drawn on a linear axis."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    xs = sorted(set(values))
    if len(xs) < 3 or xs[0] <= 0:
        return False
    ratios = [b / a for a, b in zip(xs, xs[1:])]
    return max(ratios) / min(ratios) <= 1.25


def plot_sweep(rows: list[dict], key: str, metrics: list[str], path: PathLike | None = None,
               group: str | None = None) -> Figure:
    """Each metric against the swept value ``key``: the median over seeds with the range (min to max) as an
    error bar, one line per value of ``group`` (another swept key) where given. The axis of ``key`` is
    logarithmic where its values are a geometric grid (:func:`geometric`), with a tick at each value, and linear
    otherwise."""
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    if not metrics:
        raise ValueError("plot_sweep: no metric has values")
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    groups = sorted({r.get(group) for r in rows}, key=str) if group else [None]
    for ax, metric in zip(axes, metrics):
        for g in groups:
            mine = [r for r in rows if group is None or r.get(group) == g]
            xs = sorted({r[key] for r in mine})
            med, lo, hi = [], [], []
            for x in xs:
                v = [float(r[metric]) for r in mine if r[key] == x and r.get(metric) is not None]
                med.append(np.median(v) if v else np.nan)
                lo.append(np.min(v) if v else np.nan)
                hi.append(np.max(v) if v else np.nan)
            med, lo, hi = map(np.array, (med, lo, hi))
            ax.errorbar(xs, med, yerr=[med - lo, hi - med], marker="o", capsize=3,
                        label=None if group is None else f"{group}={g}")
        ax.set_xlabel(key)
        ax.set_title(metric)
        values = sorted({r[key] for r in rows}, key=str)
        if geometric(values):
            ax.set_xscale("log")
            values.sort()
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(True, alpha=0.3)
        if group:
            ax.legend(fontsize="x-small")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(_wrap(f"Sweep over {key}: median over seeds, bars from min to max", 4.2 * cols - 0.2))
    _save(fig, path)
    return fig


def plot_property_histograms(generated: dict, reference: dict, path: PathLike | None = None,
                             names: dict | None = None) -> Figure:
    """Histograms of molecular properties (QED, logP, weight, SA) of generated molecules against reference ones."""
    names = names or {"qed": "QED", "logp": "logP", "mw": "molecular weight", "sa": "SA score"}
    keys = [k for k in generated if generated[k] or reference.get(k)]
    if not keys:
        raise ValueError("plot_property_histograms: no property has values (no valid molecules)")
    fig = Figure(figsize=(3.6 * len(keys), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, k in zip(axes, keys):
        both = [v for v in (generated.get(k), reference.get(k)) if v]
        bins = np.histogram_bin_edges(np.concatenate(both), bins=30)
        if reference.get(k):
            ax.hist(reference[k], bins=bins, density=True, alpha=0.5, label="test set")
        if generated.get(k):
            ax.hist(generated[k], bins=bins, density=True, alpha=0.5, label="samples")
        ax.set_title(names.get(k, k))
        ax.legend(fontsize="x-small")
    _save(fig, path)
    return fig
