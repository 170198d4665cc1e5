"""Every prior's log density against an independent computation, its samples, and its errors."""

import math

import numpy as np
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from scipy import stats
from scipy.special import logsumexp

from ppvae import VAE
from ppvae.registry import PRIORS

D = 3


def _z(n=6, d=D, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 1.5


def _logp(prior, z):
    return prior(z.shape[0]).log_prob(z).detach().double().numpy()


def test_standard_normal():
    z = _z()
    expected = stats.norm.logpdf(z.numpy()).sum(-1)
    np.testing.assert_allclose(_logp(PRIORS.build("normal", D), z), expected, rtol=1e-5)


def test_learned_normal_uses_its_parameters():
    p = PRIORS.build("learned_normal", D)
    with torch.no_grad():
        p.loc.copy_(torch.tensor([0.5, -1.0, 2.0]))
        p.log_scale.copy_(torch.tensor([0.0, 0.3, -0.5]))
    z = _z()
    expected = stats.norm.logpdf(z.numpy(), loc=[0.5, -1.0, 2.0], scale=np.exp([0.0, 0.3, -0.5])).sum(-1)
    np.testing.assert_allclose(_logp(p, z), expected, rtol=1e-5)
    assert sum(t.numel() for t in p.parameters()) == 2 * D


def test_laplace():
    z = _z()
    expected = stats.laplace.logpdf(z.numpy(), scale=0.7).sum(-1)
    np.testing.assert_allclose(_logp(PRIORS.build("laplace", D, scale=0.7), z), expected, rtol=1e-5)


@pytest.mark.parametrize("learn_df", [False, True])
def test_student_t(learn_df):
    p = PRIORS.build("student_t", D, df=4.0, learn_df=learn_df)
    z = _z()
    expected = stats.t.logpdf(z.numpy(), df=4.0).sum(-1)
    np.testing.assert_allclose(_logp(p, z), expected, rtol=1e-5)
    assert (len(list(p.parameters())) == 1) == learn_df
    if learn_df:  # nu is learned: the log density has a gradient with respect to it
        p(6).log_prob(z).sum().backward()
        assert p.raw_df.grad is not None and p.raw_df.grad.abs() > 0


def test_student_t_with_a_large_learned_df_is_finite():
    # softplus^-1(100) overflows float32 if computed as log(expm1(100)); nu must start at exactly df
    p = PRIORS.build("student_t", D, df=100.0, learn_df=True)
    z = _z()
    np.testing.assert_allclose(_logp(p, z), stats.t.logpdf(z.numpy(), df=100.0).sum(-1), rtol=1e-5)


def test_mixture_of_gaussians():
    p = PRIORS.build("mixture", D, components=4)
    z = _z()
    w = torch.log_softmax(p.logits, 0).detach().numpy()
    locs, scales = p.locs.detach().numpy(), p.log_scales.exp().detach().numpy()
    per_comp = np.stack([stats.norm.logpdf(z.numpy(), locs[k], scales[k]).sum(-1) + w[k] for k in range(4)], -1)
    np.testing.assert_allclose(_logp(p, z), logsumexp(per_comp, -1), rtol=1e-5)


def test_vamp_prior_is_the_guide_mixture_at_pseudo_inputs():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=D, prior={"name": "vamp", "components": 5})
    z = _z()
    q = vae.q.posterior(vae.prior.pseudo_inputs)  # (5,) Gaussians
    loc, scale = q.base_dist.loc.detach().numpy(), q.base_dist.scale.detach().numpy()
    per_comp = np.stack([stats.norm.logpdf(z.numpy(), loc[k], scale[k]).sum(-1) for k in range(5)], -1)
    np.testing.assert_allclose(_logp(vae.prior, z), logsumexp(per_comp, -1) - math.log(5), rtol=1e-5)
    # its pseudo-inputs are learned, and its weights are not stored twice
    assert vae.prior.pseudo_inputs.requires_grad
    assert not any(k.startswith("prior._guide") or k.startswith("prior.encoder") for k in vae.state_dict())


def test_flow_prior_change_of_variables_and_normalisation():
    torch.manual_seed(0)
    p = PRIORS.build("flow", 2, flows=3, hidden=[16])
    with torch.no_grad():  # move the coupling layers well away from the identity
        for param in p.parameters():
            param.add_(0.1 * torch.randn_like(param))
    d = p(1)
    z = _z(4, 2)
    # log p(z) = log N(f^-1(z)) + log |det d f^-1 / dz|, with the Jacobian by autograd
    inverse = d.transforms  # composed forward; invert by hand
    for zi in z:
        def f_inv(y):
            for t in reversed(inverse):
                y = t.inv(y)
            return y
        eps = f_inv(zi[None])[0]
        jac = torch.autograd.functional.jacobian(lambda y: f_inv(y[None])[0], zi)
        expected = stats.norm.logpdf(eps.detach().numpy()).sum() + math.log(abs(torch.linalg.det(jac).item()))
        assert d.log_prob(zi[None]).item() == pytest.approx(expected, abs=1e-4)
    # the density integrates to 1 over the plane
    g = torch.linspace(-9, 9, 601)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        mass = p(grid.shape[0]).log_prob(grid).exp().sum().item() * (g[1] - g[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name,opts,check", [
    ("normal", {}, lambda s: (s.mean(0).abs().max() < 0.05) and ((s.var(0) - 1).abs().max() < 0.05)),
    ("laplace", {"scale": 0.5}, lambda s: (s.var(0) - 2 * 0.25).abs().max() < 0.03),
    ("student_t", {"df": 5.0}, lambda s: (s.var(0) - 5 / 3).abs().max() < 0.15),
])
def test_samples_have_the_right_moments(name, opts, check):
    torch.manual_seed(0)
    s = PRIORS.build(name, D, **opts)(40000).sample()
    assert s.shape == (40000, D) and check(s)


@pytest.mark.parametrize("prior", ["normal", "learned_normal", "laplace", "student_t", "mixture", "vamp", "flow"])
def test_every_prior_generates_and_round_trips_its_spec(prior):
    vae = VAE((1, 8, 8), latent_dim=D, prior=prior)
    assert vae.generate(5).shape == (5, 1, 8, 8)
    spec = vae.prior.spec()
    assert spec["name"] == prior
    again = VAE((1, 8, 8), latent_dim=D, prior=spec)
    assert again.prior.spec() == spec
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in vae.state_dict().items()}


def test_analytic_kl_objective_falls_back_to_monte_carlo_for_non_conjugate_priors():
    """TraceMeanField_ELBO with a Student-t prior: no closed form, so it uses log q(z) - log p(z) at the draw."""
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=D, prior="student_t")
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(1)
    loss = TraceMeanField_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
    torch.manual_seed(1)
    q = vae.q.posterior(x)
    z = q.rsample()
    expected = -(vae.likelihood(vae.decoder(z)).log_prob(x) - q.log_prob(z) + vae.prior(5).log_prob(z)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("prior,message", [
    ({"name": "mixture", "components": 0}, r"prior components \(K\) must be an integer >= 1, got 0"),
    ({"name": "vamp", "components": -2}, r"prior components \(K\) must be an integer >= 1, got -2"),
    ({"name": "student_t", "df": 0}, r"prior df \(degrees of freedom\) must be > 0, got 0"),
    ({"name": "laplace", "scale": -1}, r"prior scale must be > 0, got -1"),
    ({"name": "flow", "flows": 0}, r"prior flows must be an integer >= 1, got 0"),
    ({"name": "mixture", "K": 3}, r"prior 'mixture' got unknown option\(s\) K; it accepts: components, init_scale"),
])
def test_bad_prior_parameters(prior, message):
    with pytest.raises(ValueError, match=message):
        VAE((1, 4, 4), latent_dim=D, prior=prior)


def test_flow_prior_needs_two_latent_dimensions_and_vamp_needs_gaussian_guide():
    with pytest.raises(ValueError, match="the flow prior needs latent_dim >= 2"):
        VAE((1, 4, 4), latent_dim=1, prior="flow")
    with pytest.raises(ValueError, match="the VampPrior needs the 'normal' \\(mean-field Gaussian\\) guide, got 'iaf'"):
        VAE((1, 4, 4), latent_dim=D, prior="vamp", guide="iaf")
