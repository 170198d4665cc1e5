"""Latent paths: linear and spherical interpolation, checked against closed forms."""

import math

import pytest
import torch

import ppvae
from ppvae.evaluate.latent import interpolate, lerp, slerp


def test_lerp_and_slerp_start_and_end_at_the_codes():
    torch.manual_seed(0)
    z0, z1 = torch.randn(5, 3), torch.randn(5, 3)
    for f in (lerp, slerp):
        path = f(z0, z1, 7)
        assert path.shape == (7, 5, 3)
        torch.testing.assert_close(path[0], z0)
        torch.testing.assert_close(path[-1], z1)


def test_slerp_walks_the_great_circle_between_unit_codes():
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    path = slerp(z0, z1, 5)[:, 0]  # angles 0, 22.5, 45, 67.5, 90 degrees
    angles = torch.tensor([0, 22.5, 45, 67.5, 90]) * math.pi / 180
    torch.testing.assert_close(path, torch.stack([angles.cos(), angles.sin()], -1), atol=1e-6, rtol=0)
    assert (lerp(z0, z1, 5)[2].norm() - math.sqrt(0.5)).abs() < 1e-6  # lerp cuts through the interior


@pytest.mark.parametrize("z1", [[-2.0, -4.0, 1.0], [2.0, 4.0, -1.0], [1.0, 2.0, -0.5]],
                         ids=["antiparallel", "parallel", "equal"])
def test_slerp_falls_back_to_lerp_where_the_arc_is_undefined(z1):
    z0 = torch.tensor([[1.0, 2.0, -0.5]])
    z1 = torch.tensor([z1])
    torch.testing.assert_close(slerp(z0, z1, 5), lerp(z0, z1, 5))


def test_interpolate_decodes_from_the_posterior_mean_of_one_input_to_the_other():
    torch.manual_seed(0)
    vae = ppvae.VAE((6,), latent_dim=2, likelihood="gaussian")
    x0, x1 = torch.randn(3, 6), torch.randn(3, 6)
    for method in ("linear", "spherical"):
        path = interpolate(vae, x0, x1, steps=4, method=method)
        assert path.shape == (3, 4, 6)
        torch.testing.assert_close(path[:, 0], vae.decode(vae.encode(x0)))
        torch.testing.assert_close(path[:, -1], vae.decode(vae.encode(x1)))
    with pytest.raises(ValueError, match="unknown interpolation method 'cubic'; choose one of: linear, spherical"):
        interpolate(vae, x0, x1, method="cubic")
