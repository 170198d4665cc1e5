from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ppvae import plots


def _read_png(path) -> np.ndarray:
    """Read a saved figure back and check it is a real, non-trivial PNG."""
    assert path.exists()
    assert path.stat().st_size > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    height, width = pixels.shape[:2]
    assert 100 <= height <= 3000 and 100 <= width <= 3000
    return pixels


def _brightness(pixels: np.ndarray) -> float:
    return float(pixels[..., :3].mean())


def _curve_rows(n: int, with_test: bool = True) -> list[dict]:
    rows = []
    for epoch in range(1, n + 1):
        rows.append(
            {
                "epoch": epoch,
                "train_elbo": -200.0 + 10 * epoch,
                "val_elbo": (-205.0 + 10 * epoch) if with_test else None,
                "train_recon": -180.0 + 9 * epoch,
                "train_kl": 20.0 + epoch,
                "beta": min(1.0, 0.25 * epoch),
                "seconds": 1.5,  # extra keys are ignored
            }
        )
    return rows


# ---------------------------------------------------------------------------
# _as_images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((5, 1, 28, 28), (5, 1, 28, 28)),
        ((5, 3, 8, 8), (5, 3, 8, 8)),
        ((5, 784), (5, 1, 28, 28)),
        ((5, 64), (5, 1, 8, 8)),
        ((5, 28, 28), (5, 1, 28, 28)),
    ],
)
def test_as_images_shapes(shape, expected):
    images = plots._as_images(torch.rand(shape))
    assert images is not None
    assert tuple(images.shape) == expected


@pytest.mark.parametrize("shape", [(5, 5), (5, 2), (5, 1)])
def test_as_images_non_square_is_heatmap(shape):
    assert plots._as_images(torch.rand(shape)) is None


def test_as_images_clamps_and_detaches():
    x = (torch.randn(4, 1, 6, 6) * 5).requires_grad_()
    images = plots._as_images(x)
    assert not images.requires_grad
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_as_images_rejects_bad_shapes():
    with pytest.raises(ValueError, match="C in"):
        plots._as_images(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="expected a batch"):
        plots._as_images(torch.rand(10))


# ---------------------------------------------------------------------------
# image_grid / plot_samples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(16, 1, 28, 28), (10, 784), (12, 3, 8, 8), (6, 5)],
    ids=["gray-4d", "flat-square", "rgb", "heatmap"],
)
def test_image_grid_writes_png(tmp_path, shape):
    path = tmp_path / "nested" / "dir" / "grid.png"
    fig = plots.image_grid(torch.rand(shape), nrow=4, title="grid", path=path)
    assert isinstance(fig, Figure)
    _read_png(path)


def test_image_grid_without_path_only_returns_figure(tmp_path):
    fig = plots.image_grid(torch.rand(4, 1, 8, 8))
    assert isinstance(fig, Figure)
    assert list(tmp_path.iterdir()) == []


def test_image_grid_heatmap_has_colorbar():
    fig = plots.image_grid(torch.randn(6, 5))
    # Main axes plus the colorbar axes.
    assert len(fig.axes) == 2


def test_image_grid_has_no_ticks():
    fig = plots.image_grid(torch.rand(4, 1, 8, 8))
    (ax,) = fig.axes
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0


def test_image_grid_reflects_pixel_values(tmp_path):
    white, black = tmp_path / "white.png", tmp_path / "black.png"
    plots.image_grid(torch.ones(16, 1, 28, 28), path=white)
    plots.image_grid(torch.zeros(16, 1, 28, 28), path=black)
    assert _brightness(_read_png(white)) > _brightness(_read_png(black)) + 0.3


def test_image_grid_clamps_out_of_range_values(tmp_path):
    # Values far outside [0, 1] must display like the clamped values, not be rescaled.
    clamped, raw = tmp_path / "clamped.png", tmp_path / "raw.png"
    x = torch.rand(8, 1, 8, 8) * 4 - 2
    plots.image_grid(x.clamp(0, 1), path=clamped)
    plots.image_grid(x, path=raw)
    np.testing.assert_allclose(_read_png(clamped), _read_png(raw))


def test_image_grid_single_image(tmp_path):
    path = tmp_path / "one.png"
    plots.image_grid(torch.rand(1, 1, 28, 28), path=path)
    _read_png(path)


def test_image_grid_accepts_grad_tensor(tmp_path):
    x = torch.rand(4, 784, requires_grad=True)
    path = tmp_path / "grad.png"
    plots.image_grid(x, path=str(path))  # str paths work too
    _read_png(path)


def test_plot_samples(tmp_path):
    path = tmp_path / "samples.png"
    fig = plots.plot_samples(torch.rand(16, 784), nrow=4, path=path)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_title() == "Prior samples"
    _read_png(path)
    assert plots.plot_samples(torch.rand(4, 784), title="Prior samples of class 3").axes[0].get_title() == \
        "Prior samples of class 3"


# ---------------------------------------------------------------------------
# plot_reconstructions
# ---------------------------------------------------------------------------


def test_plot_reconstructions(tmp_path):
    path = tmp_path / "rec.png"
    x = torch.rand(20, 1, 28, 28)
    fig = plots.plot_reconstructions(x, x.flip(-1), path=path, n=6)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_title() == "Inputs (top) and reconstructions (bottom)"
    _read_png(path)


def test_plot_reconstructions_layout(tmp_path):
    # White inputs over black reconstructions: the top half of the PNG must be brighter.
    path = tmp_path / "rec.png"
    plots.plot_reconstructions(torch.ones(8, 1, 28, 28), torch.zeros(8, 1, 28, 28), path=path)
    pixels = _read_png(path)[..., :3].mean(axis=(1, 2))
    middle = len(pixels) // 2
    assert pixels[:middle].mean() > pixels[middle:].mean() + 0.2


def test_plot_reconstructions_flat_decoder_output(tmp_path):
    path = tmp_path / "rec.png"
    x = torch.rand(4, 1, 28, 28)
    plots.plot_reconstructions(x, x.reshape(4, 784), path=path)
    _read_png(path)


def test_plot_reconstructions_heatmap(tmp_path):
    path = tmp_path / "rec.png"
    fig = plots.plot_reconstructions(torch.randn(10, 5), torch.randn(10, 5), path=path, n=4)
    assert isinstance(fig, Figure)
    _read_png(path)


def test_plot_reconstructions_shape_mismatch():
    with pytest.raises(ValueError, match="do not match"):
        plots.plot_reconstructions(torch.rand(4, 1, 28, 28), torch.rand(4, 100))


# ---------------------------------------------------------------------------
# plot_interpolation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(3, 7, 1, 28, 28), (2, 5, 784), (2, 6, 3, 8, 8), (3, 4, 5)],
    ids=["gray", "flat-square", "rgb", "heatmap"],
)
def test_plot_interpolation(tmp_path, shape):
    path = tmp_path / "interp.png"
    fig = plots.plot_interpolation(torch.rand(shape), path=path, title="walk")
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_title() == "walk"
    _read_png(path)


def test_plot_interpolation_rows_are_pairs(tmp_path):
    # Pair 0 is white, pair 1 is black: the top row must be the bright one and the
    # figure must be wider than tall (7 steps across, 2 pairs down).
    strips = torch.cat([torch.ones(1, 7, 1, 28, 28), torch.zeros(1, 7, 1, 28, 28)])
    path = tmp_path / "interp.png"
    plots.plot_interpolation(strips, path=path)
    pixels = _read_png(path)
    assert pixels.shape[1] > pixels.shape[0]
    rows = pixels[..., :3].mean(axis=(1, 2))
    middle = len(rows) // 2
    assert rows[:middle].mean() > rows[middle:].mean() + 0.2


@pytest.mark.parametrize("shape", [(5,), (4, 784)])
def test_plot_interpolation_bad_ndim(shape):
    with pytest.raises(ValueError, match=r"\(n_pairs, n_steps, \*event_shape\)"):
        plots.plot_interpolation(torch.rand(shape))


# ---------------------------------------------------------------------------
# plot_training_curve
# ---------------------------------------------------------------------------


def test_plot_training_curve(tmp_path):
    path = tmp_path / "curves" / "training.png"
    fig = plots.plot_training_curve(_curve_rows(5), path=path)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    ax_elbo = fig.axes[0]
    assert ax_elbo.get_ylabel() == "ELBO per example (nats)"
    assert {line.get_label() for line in ax_elbo.get_lines()} == {"train", "val"}
    pixels = _read_png(path)
    assert pixels.shape[1] > pixels.shape[0]  # three panels side by side


def test_plot_training_curve_single_epoch(tmp_path):
    path = tmp_path / "one.png"
    fig = plots.plot_training_curve(_curve_rows(1), path=path)
    for ax in fig.axes:
        for line in ax.get_lines():
            assert line.get_marker() == "o"
            assert len(line.get_xdata()) == 1
        # One integer tick at the epoch, not a fractional axis around it.
        assert list(ax.get_xticks()) == [1.0]
    _read_png(path)


def test_plot_training_curve_missing_test(tmp_path):
    rows = _curve_rows(4, with_test=False)
    del rows[0]["val_elbo"]  # missing key as well as None values
    path = tmp_path / "no_test.png"
    fig = plots.plot_training_curve(rows, path=path)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["train"]
    _read_png(path)


def test_plot_training_curve_partial_test(tmp_path):
    # Test ELBO evaluated only every other epoch.
    rows = _curve_rows(4)
    rows[0]["val_elbo"] = None
    rows[2]["val_elbo"] = None
    path = tmp_path / "partial.png"
    fig = plots.plot_training_curve(rows, path=path)
    test_line = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "val"][0]
    # Missing epochs are skipped so the recorded test points form one connected line.
    assert list(test_line.get_xdata()) == [2.0, 4.0]
    _read_png(path)


def test_plot_training_curve_empty():
    with pytest.raises(ValueError):
        plots.plot_training_curve([])


def test_plot_traversals_labels_each_row_with_its_kl(tmp_path):
    fig = plots.plot_traversals(torch.rand(2, 5, 1, 8, 8), [1, 0], kls=[2.5, 0.3], path=tmp_path / "t.png")
    ax = fig.axes[0]
    assert "one dimension per row (by KL, largest first)" in ax.get_title().replace("\n", " ")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z1 (2.50 nats)", "z0 (0.30 nats)"]  # beside each row
    assert (tmp_path / "t.png").stat().st_size > 0
    ax = plots.plot_traversals(torch.rand(1, 5, 4), [3]).axes[0]
    assert "(as given)" in ax.get_title().replace("\n", " ") and [t.get_text() for t in ax.get_yticklabels()] == ["z3"]
    # flat data that is no image: a heat map, its rows named in the title
    assert "rows (as given): z3, z1" in plots.plot_traversals(torch.rand(2, 5, 3), [3, 1]).axes[0].get_title()


# Figures whose titles or labels are longer than the figure is wide (or tall) at their size: each ran off the edges.
LONG = "Spherical interpolation between posterior means of one class (the label held fixed)"
FIGURES = {
    "traversals of ten dimensions": lambda: plots.plot_traversals(torch.rand(10, 9, 1, 28, 28), list(range(10)),
                                                                  [0.1 * d for d in range(10)]),
    "an edit of five strengths": lambda: plots.plot_interpolation(
        torch.rand(3, 5, 1, 28, 28), title="Edit along mean code(0) - mean code(1), strengths 0, 0.5, 1, 1.5, 2",
        columns=["0", "0.5", "1", "1.5", "2"], xlabel="strength (multiples of the vector)"),
    "inpainting": lambda: plots.plot_inpainting(torch.rand(4, 1, 28, 28), torch.rand(1, 28, 28) > 0.5,
                                                torch.rand(4, 1, 28, 28), title="random:0.5, gibbs"),
    "two reconstructions": lambda: plots.plot_reconstructions(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)),
    "a small class grid": lambda: plots.plot_class_grid(torch.rand(2, 3, 1, 8, 8)),
    "a heat map": lambda: plots.plot_interpolation(torch.rand(2, 4, 5), title=LONG),
    "a long interpolation title": lambda: plots.plot_interpolation(torch.rand(2, 3, 1, 8, 8), title=LONG),
    "k-hat with undefined values": lambda: plots.plot_khat_histogram(torch.tensor([0.1, 0.5, 0.9, float("inf")])),
    "a confusion matrix of two classes": lambda: plots.plot_confusion_matrix(
        np.array([[5, 1], [2, 7]]), title="q(y | x) on 10000 test examples: accuracy 85.3%"),
    "factor traversals of two dimensions": lambda: plots.plot_factor_traversals(
        torch.rand(2, 9, 1, 16, 16), [0, 3], ["orientation", "posX"], [0.2, 0.1]),
    "a sweep of one metric": lambda: plots.plot_sweep([{"beta.value": b, "kl": 1 / b} for b in (1, 2, 4)],
                                                      "beta.value", ["kl"]),
}


@pytest.mark.parametrize("make", FIGURES.values(), ids=FIGURES.keys())
def test_no_text_runs_off_the_figure(make):
    from conftest import texts_outside

    assert texts_outside(make()) == []


def test_titles_wrap_rather_than_lose_words():
    fig = plots.plot_interpolation(torch.rand(2, 3, 1, 8, 8), title=LONG)
    title = fig.axes[0].get_title()
    assert "\n" in title and title.replace("\n", " ") == LONG


def test_columns_and_rows_are_labelled_under_and_beside_the_grid():
    fig = plots.plot_interpolation(torch.rand(2, 4, 1, 8, 8), title="x2", columns=["low", "bilinear", "model", "truth"],
                                   xlabel=None, rows=["a", "b"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["low", "bilinear", "model", "truth"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and ax.get_xlabel() == ""
    assert plots.plot_interpolation(torch.rand(1, 2, 1, 8, 8)).axes[0].get_xlabel() == "start \u2192 end"
    with pytest.raises(ValueError, match=r"3 labels of columns for the 4 columns of strips \(2, 4, 1, 8, 8\)"):
        plots.plot_interpolation(torch.rand(2, 4, 1, 8, 8), columns=["a", "b", "c"])


@pytest.mark.parametrize("values, scale", [
    ((0.25, 1, 4, 16), "log"), ((1, 2, 4, 8, 16), "log"), ((1, 3, 10, 30), "log"), ((1, 2, 3, 4), "linear"),
    ((0, 1, 2), "linear"), ((2, 4, 6, 8, 16), "linear"), ((1, 16), "linear"),
    (("normal", "laplace", "vamp"), "linear")])
def test_a_sweep_axis_is_logarithmic_where_the_grid_is_geometric(values, scale):
    rows = [{"beta.value": v, "seed": s, "kl": 1.0 + i + s} for i, v in enumerate(values) for s in (0, 1)]
    ax = plots.plot_sweep(rows, "beta.value", ["kl"]).axes[0]
    assert ax.get_xscale() == scale
    if scale == "log":  # a tick at each swept value, written as given
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in values]


def test_khat_histogram_leaves_out_undefined_values_and_says_so():
    fig = plots.plot_khat_histogram(torch.tensor([0.1, 0.5, 0.9, float("inf")]))
    title = fig.axes[0].get_title().replace("\n", " ")  # wrapped to the axes
    assert title == "PSIS k-hat per example: 33.3% above 0.7; 1 undefined, not shown"
    assert "- above 0.7; 2 undefined" in plots.plot_khat_histogram(np.full(2, np.nan)).axes[0].get_title()


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"image_grid got an empty batch \(N = 0\)"):
        plots.image_grid(torch.rand(0, 1, 28, 28))


@pytest.mark.parametrize("shape, nrow", [((5, 1, 8, 8), 2), ((12, 3, 4, 6), 8), ((1, 1, 3, 3), 8),
                                         ((64, 1, 28, 28), 8)])
def test_tile_lays_images_out_as_torchvisions_make_grid(shape, nrow):
    from torchvision.utils import make_grid

    from ppvae.plots import tile

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tile(x, nrow, 2, 0.5), make_grid(x, nrow=nrow, padding=2, pad_value=0.5))
