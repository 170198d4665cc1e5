"""Your own images (a folder of PNG / JPEG files, any size, grey or colour) and a trained model in one file."""

import numpy as np
import pytest
import torch
from PIL import Image

import ppvae
from ppvae.cli import main
from ppvae.components.nets import ConvDecoder, ConvEncoder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PPVAE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _shapes_folder(root, n=24, size=(30, 45), colour=True):
    """Two classes of generated images: bright discs and dark squares, on noise."""
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for k, cls in enumerate(("disc", "square")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            cy, cx, r = rng.integers(8, h - 8), rng.integers(8, w - 8), rng.integers(4, 7)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2 if cls == "disc" else \
                (abs(yy - cy) < r) & (abs(xx - cx) < r)
            grey = np.where(inside, 230 if cls == "disc" else 40, 128) + rng.integers(-20, 20, size=(h, w))
            img = np.clip(grey, 0, 255).astype(np.uint8)
            if colour:
                img = np.stack([img, img // 2, 255 - img], -1)
            Image.fromarray(img).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 30, 45), (3, 7, 5), (1, 4, 4)])
def test_the_conv_nets_take_any_size_from_4_and_any_channels(shape):
    enc, dec = ConvEncoder(shape, 6), ConvDecoder(3, shape)
    x = torch.rand(2, *shape)
    assert enc(x).shape == (2, 6)
    assert dec(torch.randn(5, 2, 3)).shape == (5, 2, *shape)
    with pytest.raises(ValueError, match=r"at least 4 x 4 .* but the data has event shape \(1, 3, 8\)"):
        ConvEncoder((1, 3, 8), 6)


def test_a_folder_of_colour_images_of_odd_size_trains_with_labels_from_subfolders(tmp_path, cache):
    _shapes_folder(tmp_path / "img")
    data = ppvae.load_dataset("folder", path=str(tmp_path / "img"))
    assert data.event_shape == (3, 30, 45) and data.classes == ["disc", "square"]
    assert len(data.train) + len(data.val) + len(data.test) == 48 and set(data.train_labels.tolist()) == {0, 1}
    assert 0.0 <= float(data.train.min()) and float(data.train.max()) <= 1.0
    assert len(list((cache / "folder").glob("*.npz"))) == 1  # cached as one array
    again = ppvae.load_dataset("folder", path=str(tmp_path / "img"))
    assert torch.equal(again.train, data.train)
    run = tmp_path / "run"
    assert main(["train", "--set", "data.name=folder", "--set", f"data.path={tmp_path / 'img'}", "--set",
                 "encoder.name=conv", "--set", "decoder.name=conv", "--set", "likelihood.name=continuous_bernoulli",
                 "--set", "model.latent_dim=4", "--set", "train.epochs=4", "--set", "train.batch_size=8",
                 "--set", "device=cpu", "--set", "optimizer.lr=0.003", "--run-dir", str(run), "--quiet"]) == 0
    metrics = ppvae.load_run(run).metrics
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"]
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_a_folder_is_resized_and_greyed_on_request(tmp_path, cache):
    _shapes_folder(tmp_path / "img", n=4)
    data = ppvae.load_dataset("folder", path=str(tmp_path / "img"), size=[16, 20], mode="grey")
    assert data.event_shape == (1, 16, 20)
    assert ppvae.load_dataset("folder", path=str(tmp_path / "img"), size=12).event_shape == (3, 12, 12)
    _shapes_folder(tmp_path / "grey", n=2, colour=False)
    assert ppvae.load_dataset("folder", path=str(tmp_path / "grey")).event_shape[0] == 1  # auto: all grey


def test_bad_folders_are_refused_in_one_line(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no images \(PNG or JPEG: .png, .jpg, .jpeg\)"):
        ppvae.load_dataset("folder", path=str(tmp_path / "empty"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mixed / "b.png")
    with pytest.raises(ValueError, match=r"have different sizes \(a.png is 8x8, b.png is 10x12, height x width\); "
                                         r"set data.size"):
        ppvae.load_dataset("folder", path=str(mixed))
    assert ppvae.load_dataset("folder", path=str(mixed), size=8).event_shape == (1, 8, 8)
    (mixed / "c.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"could not decode image '.*c.png' \(UnidentifiedImageError"):
        ppvae.load_dataset("folder", path=str(mixed), size=8)
    with pytest.raises(ValueError, match=r"data.mode must be one of auto, grey, rgb, got 'cmyk'"):
        ppvae.load_dataset("folder", path=str(mixed), mode="cmyk")


def test_an_exported_model_rebuilds_without_its_run_directory(tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    ppvae.train_spec({"device": "cpu", "data": {"name": "digits", "limit_train": 200, "limit_test": 50},
                      "model": {"latent_dim": 3}, "train": {"epochs": 2, "figures": False}}, run_dir=run,
                     progress=False)
    trained = ppvae.load_run(run)
    assert main(["export", str(run), str(tmp_path / "model.pt")]) == 0
    assert "ppvae.load(" in capsys.readouterr().out
    shutil.copy(run / "checkpoint.pt", tmp_path / "checkpoint.pt")
    shutil.rmtree(run)
    loaded = ppvae.load(tmp_path / "model.pt")
    assert loaded.run_dir is None and loaded.spec == trained.spec and loaded.metrics == trained.metrics
    x = loaded.data.test
    assert ppvae.evaluate_elbo(loaded.model, x, seed=2)["elbo"] == ppvae.evaluate_elbo(trained.model, x, seed=2)["elbo"]
    with pytest.raises(ValueError, match=r"is not a model written by `ppvae export` \(format 'ppvae-model 1'\); a run "
                                         r"directory's checkpoint is loaded with ppvae.load_run\(RUN\)"):
        ppvae.load(tmp_path / "checkpoint.pt")
