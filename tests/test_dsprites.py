"""The procedural dSprites: exact factor grid, deterministic binary images, every factor visible."""

import pytest
import torch

import ppvae
from ppvae.data.dsprites import COMBINATIONS, FACTORS, LEVELS, all_factors, render


def test_the_factor_grid_is_dsprites():
    assert LEVELS == (3, 6, 40, 32, 32) and COMBINATIONS == 737280
    grid = all_factors()
    assert grid.shape == (737280, 5) and torch.equal(grid.max(0).values, torch.tensor(LEVELS) - 1)
    assert torch.equal(grid[1], torch.tensor([0, 0, 0, 0, 1]))  # the last factor runs fastest, as in dSprites


def test_images_are_binary_deterministic_and_inside_the_frame():
    rows = all_factors()[torch.randperm(COMBINATIONS, generator=torch.Generator().manual_seed(0))[:300]]
    a, b = render(rows), render(rows)
    assert a.shape == (300, 1, 64, 64) and torch.equal(a, b)
    assert set(torch.unique(a).tolist()) == {0.0, 1.0}
    assert (a.sum((1, 2, 3)) > 20).all()          # every sprite is visible
    assert a[..., 0, :].sum() == 0 and a[..., -1, :].sum() == 0 and a[..., :, 0].sum() == 0 and a[..., :, -1].sum() == 0


@pytest.mark.parametrize("factor", range(5))
def test_every_factor_changes_the_image(factor):
    base = torch.tensor([[1, 3, 5, 10, 20]])  # an ellipse; one orientation step is 9 degrees, not a symmetry
    other = base.clone()
    other[0, factor] += 1
    assert not torch.equal(render(base), render(other)), FACTORS[factor]


def test_bigger_scale_more_pixels_and_shapes_differ():
    sizes = render(torch.tensor([[0, s, 0, 16, 16] for s in range(6)])).sum((1, 2, 3))
    assert (sizes[1:] > sizes[:-1]).all()
    shapes = render(torch.tensor([[k, 5, 0, 16, 16] for k in range(3)]))
    assert not torch.equal(shapes[0], shapes[1]) and not torch.equal(shapes[1], shapes[2])


def test_the_dataset_has_the_factor_matrix_as_labels_and_is_seeded():
    d = ppvae.load_dataset("dsprites", n=500, seed=3)
    assert d.event_shape == (1, 64, 64) and d.train_labels.shape == (360, 5) and d.test_labels.shape == (100, 5)
    assert d.val_labels.shape == (40, 5)  # a tenth of the 400 training rows held out for validation
    torch.testing.assert_close(render(d.train_labels[:20]), d.train[:20])
    assert torch.equal(ppvae.load_dataset("dsprites", n=500, seed=3).train_labels, d.train_labels)
    assert not torch.equal(ppvae.load_dataset("dsprites", n=500, seed=4).train_labels, d.train_labels)


def test_bad_factor_rows_and_sizes_are_one_line():
    with pytest.raises(ValueError, match=r"dSprites factors are rows of 5 indices"):
        render(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"dSprites factor indices must be integers below \(3, 6, 40, 32, 32\)"):
        render(torch.tensor([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="data.n = 800000 is more than the 737280 dSprites combinations"):
        ppvae.load_dataset("dsprites", n=800000)
