"""Attribute vectors and edits along them."""

import pytest
import torch

import ppvae
from ppvae.apps.edit import attribute_vector, edit
from ppvae.cli import main


@pytest.fixture
def vae_run(digits_vae_run):
    return digits_vae_run


def test_zero_strength_is_the_reconstruction_and_the_vector_is_the_difference_of_means(vae_run):
    run = ppvae.load_run(vae_run)
    m, data = run.model, run.data
    v = attribute_vector(m, data.test, data.test_labels, 1, 0)
    codes = m.encode(data.test)
    torch.testing.assert_close(v, codes[data.test_labels == 0].mean(0) - codes[data.test_labels == 1].mean(0))
    x = data.test[:5]
    strips = edit(m, x, v, [0, 1])
    assert strips.shape == (5, 2, 1, 28, 28)
    torch.testing.assert_close(strips[:, 0], m.reconstruct(x))


def test_the_target_class_probability_rises_with_strength(vae_run, capsys, saved_figures):
    from conftest import texts_outside

    assert main(["edit", str(vae_run), "--from-label", "1", "--to-label", "0", "--strengths", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    probs = [float(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("strength")]
    assert len(probs) == 3 and probs[0] < 0.2 and probs[2] > 0.8 and probs[0] < probs[1] <= probs[2] + 1e-9
    assert (vae_run / "figures" / "edit_1_to_0.png").is_file()
    fig = saved_figures["edit_1_to_0.png"]  # each column under its strength, no text clipped
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]
    assert texts_outside(fig) == []


def test_edit_errors_are_one_line(vae_run, capsys):
    assert main(["edit", str(vae_run), "--from-label", "12", "--to-label", "0"]) == 2
    err = capsys.readouterr().err
    assert "--from-label 12: no example has that label (labels present: 0, 1, 2" in err and err.count("\n") == 1
    cvae = ppvae.CVAE((1, 28, 28), 10, 4)
    with pytest.raises(ValueError, match="CVAE conditions on its label; to change the class, change the label"):
        attribute_vector(cvae, torch.rand(4, 1, 28, 28), torch.tensor([0, 0, 1, 1]), 0, 1)
