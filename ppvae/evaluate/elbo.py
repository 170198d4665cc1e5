"""Per-example ELBO, split per observed site and per latent site, and the IWAE estimate of log p(x), for any program.

    ELBO(x) = sum_observed E_q[log p(x_o | ...)] - sum_latent E_q[log q(z_l | ...) - log p(z_l | ...)]

always with beta = 1 (the honest bound). The terms are read off Pyro traces of the model and the guide, so
any model/guide pair works: each observed site gives a reconstruction term; each latent site a KL term,
analytic where Pyro has it registered (lower variance; conditional on the draws of the site's parents) and
log q(z) - log p(z) at the sampled z otherwise. A term is reduced to one number per example by summing every
dimension but the data plate's (``pyro.plate("data", N)``); a site outside the data plate is shared equally
by the examples. Figures are per example in nats; bits per dimension are given where -log p(x) is a code
length (a mass function on data in its support).
"""

from __future__ import annotations

import math

import torch

from ..batch import as_batch, batches
from ..batch import batch_size as num_examples
from ..components.likelihoods import bits_per_dim
from ..inference import particles
from ..inference.program import program
from ..progress import bar
from ..traces import batch_device, elbo_terms, sampled_enumeration, seeded_eval, site_terms


@torch.no_grad()
def evaluate_elbo(model, data, *, batch_size: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """Mean ELBO, reconstruction and KL per example (nats) over ``data`` (a tensor x or a batch mapping), with
    the terms of each observed site (``recon_sites``) and latent site (``kl_sites``); deterministic for a given
    ``seed`` and leaves the global random state untouched, so evaluating does not change a training run.
    ``progress``: a bar over the examples, updated per batch.

    The ELBO is taken with beta = 1 whatever beta the model trained with, from one joint draw of the guide and
    the model per example (the KL in closed form where Pyro has it registered). The model is in eval mode
    during the evaluation and put back in the mode it was in; no gradients are kept.

    :param model: the trained model (``run.model``): any ppvae model or Pyro program module with ``model`` and
        ``guide``.
    :param data: the examples, on the model's device: a tensor ``x`` of shape ``(N, *event_shape)``, or a batch
        mapping with ``"x"`` and whatever else the model reads (``dataset.batch("test")``: labels, masks, ...).
    :param batch_size: the examples evaluated at a time (memory only: the mean is over all of ``data``), a
        positive integer.
    :param seed: the seed of the Monte Carlo draws; the same seed and ``batch_size`` give the same numbers.
    :param progress: show a progress bar over the examples.
    :returns: a dict of means per example, in nats: ``elbo`` (= ``recon`` - ``kl``), ``recon`` (the expected
        log-likelihood), ``kl``, ``recon_sites`` and ``kl_sites`` (those terms per observed and per latent site,
        by site name), ``num_examples``, and ``bits_per_dim`` where -ELBO is a code length (a likelihood that is
        a mass function on data in its support).
    :raises TypeError: if ``data`` is neither a tensor nor a mapping of tensors.
    """
    data = as_batch(data)
    p = program(model)
    plate = p.sites(data).plate
    sums_obs: dict[str, float] = {}
    sums_kl: dict[str, float] = {}
    with seeded_eval(seed, batch_device(data), p.module), bar(num_examples(data), "ELBO", progress) as shown:
        for part in batches(data, batch_size):
            observed, kls = site_terms(p.model, p.guide, p.prepare(part), plate=plate)
            for name, v in observed.items():
                sums_obs[name] = sums_obs.get(name, 0.0) + v.sum()
            for name, v in kls.items():
                sums_kl[name] = sums_kl.get(name, 0.0) + v.sum()
            shown.update(num_examples(part))
    n = num_examples(data)
    sums = list(sums_obs.values()) + list(sums_kl.values())
    means = [v / n for v in torch.stack(sums).tolist()] if sums else []  # one host read for every site's term
    recon_sites = dict(zip(sums_obs, means[:len(sums_obs)]))
    kl_sites = dict(zip(sums_kl, means[len(sums_obs):]))
    recon_mean, kl_mean = sum(recon_sites.values()), sum(kl_sites.values())
    out = {"elbo": recon_mean - kl_mean, "recon": recon_mean, "kl": kl_mean, "num_examples": n,
           "recon_sites": recon_sites, "kl_sites": kl_sites}
    likelihood = getattr(p.module, "likelihood", None)
    if callable(getattr(likelihood, "gives_code_length", None)) and likelihood.gives_code_length(data["x"]):
        out["bits_per_dim"] = bits_per_dim(-out["elbo"], math.prod(data["x"].shape[1:]))
    return out


def particles_vectorize(model, batch) -> bool:
    """Whether ``model``'s programs broadcast over a leading particle dimension (checked once on a few examples,
    then remembered); a program that does not is evaluated with a loop over particles, with a warning."""
    return particles.vectorizes(program(model), batch)


@torch.no_grad()
def log_importance_weights(model, x, num_samples: int, *, max_rows: int = 20000) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for z_k ~ q(z | x): shape (num_samples, batch).

    Particles are drawn in chunks of at most ``max_rows`` (particles x examples) rows, so memory stays bounded
    whatever ``num_samples`` is; vectorized where the program broadcasts, else one particle at a time.
    """
    if int(num_samples) < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {num_samples}")
    batch = as_batch(x)
    p = program(model)
    p.sites(batch)
    vectorize = particles_vectorize(p, batch)
    args = p.prepare(batch)
    chunk = max(1, min(int(num_samples), max_rows // max(1, args.rows)))
    out = []
    for start in range(0, int(num_samples), chunk):
        k = min(chunk, int(num_samples) - start)
        with sampled_enumeration():
            out.append(particles.iwae(p, k, vectorize).log_weights(p.model, p.guide, args, pathwise=False))
    return args.restore(torch.cat(out), dim=1)  # the data's order, where a transform reordered the rows


@torch.no_grad()
def iwae_log_likelihood(model, x, num_samples: int = 1000, *, batch_size: int = 100, seed: int = 0,
                        return_weights: bool = False, progress: bool = False):
    r"""The importance-weighted estimate of log p(x) per example (Burda et al. 2016), in nats:

    .. math:: \log p(x) \approx \log \frac{1}{K} \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}, \quad z_k \sim q(z|x)

    A lower bound in expectation that tightens as K grows. ``x`` is a tensor or a batch mapping. Returns a
    tensor of shape (N,), and with ``return_weights`` also the (N, K) log weights (for PSIS diagnostics).
    Deterministic for a seed and leaves the global random state alone. ``progress``: a bar over the examples,
    updated per batch of ``batch_size``.
    """
    estimates, weights = [], []
    data = as_batch(x)
    shown = bar(num_examples(data), f"IWAE log-likelihood, K={num_samples}", progress)
    with seeded_eval(seed, batch_device(data), model), shown:
        for part in batches(data, batch_size):
            lw = log_importance_weights(model, part, num_samples)
            estimates.append(torch.logsumexp(lw, 0) - math.log(num_samples))
            if return_weights:
                weights.append(lw.T.cpu())
            shown.update(num_examples(part))
    ll = torch.cat(estimates)
    return (ll, torch.cat(weights)) if return_weights else ll


__all__ = ["evaluate_elbo", "log_importance_weights", "iwae_log_likelihood", "particles_vectorize",
           # the trace toolkit's, where ppvae.evaluate has always offered them
           "seeded_eval", "site_terms", "elbo_terms"]
