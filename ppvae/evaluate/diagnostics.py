"""Diagnostics of a trained VAE: posterior collapse and the quality of the guide.

- KL per latent dimension and active units (Burda et al. 2016): a unit u is active when
  Cov_x(E_q[z_u | x]) > 0.01, i.e. the code it carries varies with the input.
- Mutual information I(x; z) under the aggregate posterior q(x, z) = p_data(x) q(z | x) (Hoffman & Johnson
  2016), the minibatch estimator of He et al. (2019): E[log q(z|x)] - E[log q(z)], with
  q(z) = mean_j q(z | x_j).
- Pareto-smoothed importance sampling (Vehtari et al.; Yao et al. 2018, "Yes, but did it work?"): the
  shape k-hat of the tail of each example's importance weights p(x, z)/q(z|x); above 0.7 the guide is too
  far from the posterior for importance sampling to be trusted. Computed by ArviZ's ``psislw``.
- Posterior draws per example as ArviZ ``InferenceData``, for ``az.summary`` and ``az.plot_posterior``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro import poutine

from ..batch import as_batch, batches, take
from ..batch import batch_size as num_examples
from ..inference import particles
from ..inference.decomposition import TERMS, kl_decomposition
from ..inference.program import program
from ..progress import bar
from ..traces import batch_device, sample_sites, seeded_eval, site_terms

KHAT_THRESHOLD = 0.7
#: ArviZ fits the Pareto tail to the largest min(K/5, 3 sqrt(K)) weights and gives k-hat = inf for fewer than 5
MIN_PSIS_SAMPLES = 21
ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def kl_per_dimension(model, x, *, batch_size: int = 1000, seed: int = 0, by_site: bool = False,
                     progress: bool = False):
    """Mean KL(q(z_d | x) || p(z_d)) over ``x`` for each latent dimension d, in nats (analytic where registered):
    the dimensions of every latent site side by side, or ``{site: tensor}`` with ``by_site``.

    Raises ``ValueError`` naming the site where the prior or guide does not factorize over dimensions
    (mixture, VampPrior, flows), where a per-dimension KL is not defined. ``progress``: a bar over the examples.
    """
    totals: dict[str, torch.Tensor] = {}
    data = as_batch(x)
    p = program(model)
    plate = p.sites(data).plate
    shown = bar(num_examples(data), "KL per dimension", progress)
    with seeded_eval(seed, batch_device(data), p.module), shown:
        for part in batches(data, batch_size):
            _, kls = site_terms(p.model, p.guide, p.prepare(part), per_dim=True, plate=plate)
            for name, kl in kls.items():
                totals[name] = kl.sum(0) if name not in totals else totals[name] + kl.sum(0)
            shown.update(num_examples(part))
    n = num_examples(data)
    out = {name: total / n for name, total in totals.items()}
    return out if by_site else torch.cat(list(out.values()))


def continuous_latents(model, x) -> list[str]:
    """The guide's continuous latent sites (discrete ones have no posterior mean to vary)."""
    return particles.continuous_latents(program(model), x)


def posterior_means(model, x, *, num_draws: int = 1000, seed: int = 0,
                    sites: list[str] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{site: (E_q[z | x] per example, its Monte Carlo variance)}, each (N, dims of the site), in the data's
    order (:func:`ppvae.inference.particles.posterior_means`)."""
    return particles.posterior_means(program(model), x, num_draws=num_draws, seed=seed, sites=sites)


def guide_draws(model, data, num_draws: int, sites=None, means: bool = False) -> dict[str, torch.Tensor]:
    """{site: (num_draws, N, dims of the site)} draws of the guide's sites, in the data's order
    (:func:`ppvae.inference.particles.guide_draws`)."""
    return particles.guide_draws(program(model), data, num_draws, sites, means)


def active_units(model, x, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 num_draws: int = 1000, seed: int = 0, by_site: bool = False, progress: bool = False):
    """(number of active units, Cov_x(E_q[z_d | x]) for each d), Burda et al. (2016), over every continuous
    latent site (dimensions side by side), or ``{site: (count, variance)}`` with ``by_site``.

    E_q[z | x] comes from :func:`posterior_means`; where it is a Monte Carlo average, the noise that this adds to
    the variance across x, E_x[Var of the average], is subtracted, so a dead unit is not counted as active
    because of sampling noise. ``progress``: a bar over the examples, updated per batch.
    """
    data = as_batch(x)
    parts = []
    with bar(num_examples(data), "active units", progress) as shown:
        for part in batches(data, batch_size):
            parts.append(posterior_means(model, part, num_draws=num_draws, seed=seed))
            shown.update(num_examples(part))
    out = {}
    for name in parts[0]:
        means = torch.cat([p[name][0] for p in parts])
        noise = torch.cat([p[name][1] for p in parts]).mean(0)
        variance = (means.var(0) - noise).clamp_min(0.0)
        out[name] = (int((variance > threshold).sum()), variance)
    if by_site:
        return out
    variance = torch.cat([v for _, v in out.values()])
    return int((variance > threshold).sum()), variance


@torch.no_grad()
def mutual_information(model, x, *, seed: int = 0) -> float:
    r"""I(x; z) under q, in nats, estimated on the batch ``x`` (at most log N for N examples):

    .. math:: \hat I = \frac{1}{N}\sum_i \Big[\log q(z_i \mid x_i)
              - \log \frac{1}{N}\sum_j q(z_i \mid x_j)\Big], \quad z_i \sim q(z \mid x_i)

    z is every latent site of the guide together; each must depend on x alone (not on other latents) and
    broadcast over a batch of z, as the mean-field Gaussian guide does.
    """
    data = as_batch(x)
    p = program(model)
    means = posterior_means(p, take(data, slice(0, 2)), num_draws=2, seed=seed)
    dependent = [n for n, (_, var) in means.items() if bool((var > 0).any())]
    with seeded_eval(seed, batch_device(data), p.module):
        tr = poutine.trace(p.guide).get_trace(p.prepare(data))
    n = num_examples(data)
    cross = own = 0.0
    for name, site in sample_sites(tr).items():
        if site["fn"].support.is_discrete:
            raise ValueError(f"the mutual-information estimate needs continuous latent sites; site {name!r} is "
                             f"discrete")
        if name in dependent:
            raise ValueError(f"the mutual-information estimate needs latent sites whose q(z | x) has a closed-form "
                             f"mean given x alone; site {name!r} ({type(site['fn']).__name__}) has not: it depends "
                             f"on other latent draws, or its mean is taken by draws (a flow's is)")
        q, z = site["fn"], site["value"]
        try:  # every z_i under every q(z | x_j)
            c = q.log_prob(z.unsqueeze(-q.event_dim - 1 if q.event_dim else -1))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"the mutual-information estimate needs a guide whose posterior broadcasts over a "
                             f"batch of z (the 'normal' guide); site {name!r} does not ({e})") from None
        if tuple(c.shape) != (n, n):
            raise ValueError(f"the mutual-information estimate needs site {name!r} to have one distribution per "
                             f"example; its log-density over pairs has shape {tuple(c.shape)}")
        cross = cross + c
        own = own + q.log_prob(z)
    if isinstance(cross, float):
        raise ValueError(f"{p.name} has no latent variable, so there is no I(x; z) to estimate")
    log_qz = torch.logsumexp(cross, 1) - math.log(n)
    return float((own - log_qz).mean())


def psis_khat(log_weights: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pareto k-hat per example from (examples, samples) log importance weights, by ArviZ's PSIS.

    ArviZ returns ``inf`` where k-hat is undefined: with fewer than ``MIN_PSIS_SAMPLES`` samples, or when the
    tail has fewer than 5 distinct weights (every weight equal, as for an exact guide of a linear model).
    """
    import arviz as az

    lw = log_weights.detach().cpu().double().numpy() if torch.is_tensor(log_weights) else np.asarray(log_weights)
    _, khat = az.psislw(lw)
    return np.asarray(khat)


@torch.no_grad()
def posterior_inference_data(model, x, *, num_draws: int = 500, seed: int = 0):
    """Draws z ~ q(z | x_i) for each example as ``arviz.InferenceData``: one variable per latent site, one chain,
    dims ``example`` and ``<site>_dim`` (the site's dimensions, flattened)."""
    import arviz as az

    data = as_batch(x)
    p = program(model)
    with seeded_eval(seed, batch_device(data), p.module):
        values = guide_draws(p, p.prepare(data), num_draws)
    n = num_examples(data)
    posterior = {name: v.cpu().numpy()[None] for name, v in values.items()}
    coords = {"example": np.arange(n), **{f"{k}_dim": np.arange(v.shape[-1]) for k, v in values.items()}}
    return az.from_dict(posterior=posterior, coords=coords, dims={k: ["example", f"{k}_dim"] for k in values})


@torch.no_grad()
def decomposition_means(model, batch, dataset_size: int, estimator: str = "mss") -> dict[str, float]:
    """Batch means of the KL's index-code MI, total correlation and dimension-wise KL (nats per example) for a
    model's programs (:mod:`ppvae.inference.decomposition`)."""
    p = program(model)
    terms = kl_decomposition(p.model, p.guide, p.prepare(batch), dataset_size, estimator, plate=p.sites(batch).plate)
    return dict(zip(TERMS, torch.stack([terms[k].mean() for k in TERMS]).tolist()))  # one host read


def collapse_warnings(latent_dim: int, active: int, kl_total: float, kl_dims: list[float] | None, *,
                      sites: dict[str, int] | None = None, kl_sites: dict[str, list[float]] | None = None) -> list[str]:
    """Human-readable warnings when the code carries (almost) no information about x. With two or more latent
    sites, ``sites`` (each site's active units) and ``kl_sites`` (each site's KL per dimension) name the sites and
    number the dimensions within each, rather than pooling them."""
    warnings = []
    if active == 0 or kl_total < 0.1:
        warnings.append(f"posterior collapse: {active} of {latent_dim} latent units are active and the KL is "
                        f"{kl_total:.3g} nats; the decoder ignores z. Try KL warm-up (beta.name = \"linear\"), "
                        f"cyclical annealing or free bits.")
    elif active < latent_dim:
        per_site = f" ({', '.join(f'{k}: {c}' for k, c in sites.items())})" if sites and len(sites) > 1 else ""
        warnings.append(f"partial posterior collapse: only {active} of {latent_dim} latent units are active"
                        f"{per_site} (Cov_x E_q[z_d] > {ACTIVE_THRESHOLD}); the others follow the prior.")
    if kl_sites and len(kl_sites) > 1:
        dead = {k: [d for d, v in enumerate(kls) if v < 0.01] for k, kls in kl_sites.items()}
        if any(dead.values()) and active > 0:
            warnings.append(f"latent dimensions {'; '.join(f'{k} {d}' for k, d in dead.items() if d)} carry less "
                            f"than 0.01 nats of KL each.")
    elif kl_dims is not None:
        dead = [d for d, k in enumerate(kl_dims) if k < 0.01]
        if dead and active > 0:
            warnings.append(f"latent dimensions {dead} carry less than 0.01 nats of KL each.")
    return warnings
