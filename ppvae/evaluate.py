"""Per-example ELBO, split into reconstruction and KL, read off traces of the model and guide programs.

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))          (always with beta = 1: the honest bound)

The terms are taken from the Pyro traces, so any model/guide pair with observed and latent sites works:
observed sites sum to the reconstruction term; for each latent site the KL is analytic where Pyro has it
registered (lower variance) and log q(z) - log p(z) at the sampled z otherwise. Figures are per example in
nats; bits per dimension are given where -log p(x) is a code length (a mass function on data in its support).
"""

from __future__ import annotations

import contextlib
import math

import torch
import pyro.distributions as dist
from pyro import poutine
from pyro.distributions.kl import kl_divergence
from pyro.poutine.util import site_is_subsample

from .likelihoods import bits_per_dim


@contextlib.contextmanager
def seeded_eval(seed: int, device: torch.device | str = "cpu", module: torch.nn.Module | None = None):
    """Run a block reproducibly without disturbing anyone else's randomness.

    Inside the block the random state is ``torch.manual_seed(seed)`` (CPU, and the CUDA device ``device``
    names) and ``module`` is in eval mode; afterwards, even after an exception, the global random state and
    the module's training mode are what they were. Evaluation and figures use it, so that looking at a
    model mid-training does not change the training run.
    """
    device = torch.device(device)
    was_training = module.training if module is not None else None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if module is not None:
            module.eval()
        try:
            yield
        finally:
            if module is not None:
                module.train(was_training)


def elbo_terms(model, guide, x: torch.Tensor, *args, analytic: bool = True, per_dim: bool = False,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, kl) from one joint draw of the guide and model traces, with gradients.

    ``reconstruction`` has shape (batch,). ``kl`` has shape (batch,), or (batch, latent dims) with ``per_dim``,
    which needs a prior and guide that factorize over dimensions. ``analytic`` uses a closed-form KL where
    Pyro has one registered, else log q(z) - log p(z) at the sampled z.
    """
    guide_tr = poutine.trace(guide).get_trace(x, *args, **kwargs)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, *args, **kwargs)
    recon = x.new_zeros(x.shape[0])
    kls = []
    for name, site in model_tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            recon = recon + site["fn"].log_prob(site["value"])
            continue
        q, p, z = guide_tr.nodes[name]["fn"], site["fn"], site["value"]
        if per_dim:
            q, p = _factors(q, name), _factors(p, name)
        kl = None
        if analytic:
            try:
                kl = kl_divergence(q, p)
            except NotImplementedError:
                pass
        kls.append(kl if kl is not None else q.log_prob(z) - p.log_prob(z))
    kl = torch.cat(kls, -1) if per_dim else sum(kls, x.new_zeros(x.shape[0]))
    return recon, kl


def _factors(d, name: str):
    """The per-dimension factors of a diagonal distribution (an ``Independent`` over one event dim)."""
    while isinstance(d, dist.ExpandedDistribution):
        d = d.base_dist
    if isinstance(d, (dist.Independent, torch.distributions.Independent)) and d.reinterpreted_batch_ndims == 1:
        return d.base_dist
    raise ValueError(
        f"a KL per latent dimension needs a prior and guide that factorize over the dimensions of {name!r}, "
        f"but got {type(d).__name__}; use a diagonal prior (normal, learned_normal, laplace, student_t) "
        f"with the 'normal' guide"
    )


@torch.no_grad()
def evaluate_elbo(vae, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL per example (nats) over ``x``; deterministic for a given ``seed``
    and leaves the global random state untouched, so evaluating does not change a training run."""
    recon_sum = kl_sum = 0.0
    with seeded_eval(seed, x.device, vae):
        for start in range(0, x.shape[0], batch_size):
            recon, kl = elbo_terms(vae.model, vae.guide, x[start:start + batch_size])
            recon_sum += recon.sum()
            kl_sum += kl.sum()
    n = x.shape[0]
    recon_mean, kl_mean = float(recon_sum) / n, float(kl_sum) / n
    out = {"elbo": recon_mean - kl_mean, "recon": recon_mean, "kl": kl_mean, "num_examples": n}
    if vae.likelihood.gives_code_length(x):
        out["bits_per_dim"] = bits_per_dim(-out["elbo"], math.prod(vae.event_shape))
    return out


@torch.no_grad()
def log_importance_weights(vae, x: torch.Tensor, num_samples: int, *, max_rows: int = 20000) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for z_k ~ q(z | x): shape (num_samples, batch).

    Particles are drawn in chunks of at most ``max_rows`` (particles x examples) decoder rows, so memory stays
    bounded whatever ``num_samples`` is.
    """
    from .objectives import IWAE

    if int(num_samples) < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {num_samples}")
    chunk = max(1, min(int(num_samples), max_rows // max(1, x.shape[0])))
    out = []
    for start in range(0, int(num_samples), chunk):
        k = min(chunk, int(num_samples) - start)
        out.append(IWAE(num_particles=k).log_weights(vae.model, vae.guide, x))
    return torch.cat(out)


@torch.no_grad()
def iwae_log_likelihood(vae, x: torch.Tensor, num_samples: int = 1000, *, batch_size: int = 100, seed: int = 0,
                        return_weights: bool = False):
    r"""The importance-weighted estimate of log p(x) per example (Burda et al. 2016), in nats:

    .. math:: \log p(x) \approx \log \frac{1}{K} \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}, \quad z_k \sim q(z|x)

    A lower bound in expectation that tightens as K grows. Returns a tensor of shape (N,), and with
    ``return_weights`` also the (N, K) log weights (for PSIS diagnostics). Deterministic for a seed and
    leaves the global random state alone.
    """
    estimates, weights = [], []
    with seeded_eval(seed, x.device, vae):
        for start in range(0, x.shape[0], batch_size):
            lw = log_importance_weights(vae, x[start:start + batch_size], num_samples)
            estimates.append(torch.logsumexp(lw, 0) - math.log(num_samples))
            if return_weights:
                weights.append(lw.T.cpu())
    ll = torch.cat(estimates)
    return (ll, torch.cat(weights)) if return_weights else ll
