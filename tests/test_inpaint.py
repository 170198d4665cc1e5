"""Inpainting by conditioning on observed pixels."""

import pytest
import torch

import ppvae
from ppvae.apps.inpaint import inpaint, inpaint_report, make_mask
from ppvae.cli import main


@pytest.fixture
def run_dir(digits_vae_run):
    return digits_vae_run


def test_masks_hide_what_they_say():
    assert int((~make_mask("left", (1, 28, 28))).sum()) == 28 * 14
    assert int((~make_mask("center", (1, 28, 28))).sum()) == 14 * 14
    assert int((~make_mask("quadrant", (1, 28, 28))).sum()) == 14 * 14
    hidden = (~make_mask("random:0.5", (1, 28, 28), seed=1)).float().mean()
    assert 0.4 < hidden < 0.6
    assert torch.equal(make_mask("random:0.5", (1, 28, 28), seed=1), make_mask("random:0.5", (1, 28, 28), seed=1))


@pytest.mark.parametrize("method", ["importance", "gibbs"])
def test_inpainting_keeps_observed_pixels_and_beats_the_mean_image(run_dir, method):
    run = ppvae.load_run(run_dir)
    x = run.data.test[:100]
    mask = make_mask("left" if method == "importance" else "random:0.5", x.shape[1:])
    report, filled = inpaint_report(run.model, run.data.train, x, mask, method=method, num_samples=50, steps=20)
    assert torch.equal(filled[:, mask], x[:, mask])
    assert report[method]["held_out_log_likelihood"] > report["mean_image"]["held_out_log_likelihood"] + 5
    assert report[method]["squared_error"] < report["mean_image"]["squared_error"]


def test_inpaint_cli_and_its_errors(run_dir, capsys, tmp_path, saved_figures):
    from conftest import texts_outside

    assert main(["inpaint", str(run_dir), "--mask", "center", "-k", "20", "--max-examples", "50"]) == 0
    out = capsys.readouterr().out
    assert "importance" in out and "mean_image" in out and "nearest_image" in out
    assert (run_dir / "figures" / "inpaint_center_importance.png").is_file()
    fig = saved_figures["inpaint_center_importance.png"]  # each column named under it, no text clipped
    assert [t.get_text().replace("\n", " ") for t in fig.axes[0].get_xticklabels()] == \
        ["observed (hidden pixels grey)", "filled", "truth"]
    assert texts_outside(fig) == []
    for argv, message in [(["--mask", "blob"], "unknown mask 'blob'; choose one of: center, left, top, quadrant"),
                          (["--mask", "random:1.5"], "the share of hidden pixels must be between 0 and 1")]:
        assert main(["inpaint", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    run = ppvae.load_run(run_dir)
    x = run.data.test[:4]
    with pytest.raises(ValueError, match=r"the mask has shape \(1, 8, 8\) but the data have event shape \(1, 28, 28\)"):
        inpaint(run.model, x, torch.ones(1, 8, 8, dtype=torch.bool), fill=x[0])
    with pytest.raises(ValueError, match="the mask observes no pixel: nothing to condition on"):
        inpaint(run.model, x, torch.zeros(1, 28, 28, dtype=torch.bool), fill=x[0])


def test_a_likelihood_that_does_not_factorize_over_pixels_is_refused():
    class Joint(torch.nn.Module):  # one multivariate normal over all pixels: no per-pixel log-probability
        def forward(self, out):
            return torch.distributions.MultivariateNormal(out.flatten(-3), torch.eye(784))

    m = ppvae.VAE((1, 28, 28), 4, likelihood="gaussian")
    m.likelihood.forward = Joint().forward
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="does not factorize over pixels, so it cannot give a masked log-probability"):
        inpaint(m, x, make_mask("left", x.shape[1:]), fill=x[0])


def test_upscaling_by_four_beats_bilinear_and_agrees_with_the_low_resolution_image(run_dir, capsys, saved_figures):
    from ppvae.apps.inpaint import pool, upscale, upscale_report

    run = ppvae.load_run(run_dir)
    x = run.data.test[:100]
    low = pool(x, 4)
    report, images = upscale_report(run.model, x, 4, num_samples=50)
    assert report["model"]["log_likelihood"] > report["bilinear"]["log_likelihood"]
    image = images["model"]
    # conditioning pulls the pooled picture towards the observation: closer than the unconditioned mean image
    mean_image = run.data.train.mean(0, keepdim=True)
    assert (pool(image, 4) - low).square().mean() < (pool(mean_image, 4) - low).square().mean() / 2
    with pytest.raises(ValueError, match="--factor must be 2 or 4, got 3"):
        upscale(run.model, low, 3)
    assert main(["upscale", str(run_dir), "--factor", "2", "-k", "10", "--max-examples", "20"]) == 0
    assert "bilinear" in capsys.readouterr().out and (run_dir / "figures" / "upscale_x2.png").is_file()
    from conftest import texts_outside

    ax = saved_figures["upscale_x2.png"].axes[0]  # the columns named under them; no stray "start -> end" caption
    assert [t.get_text() for t in ax.get_xticklabels()] == ["low-res (14x14)", "bilinear", "model", "truth"]
    assert ax.get_xlabel() == "" and texts_outside(ax.figure) == []
