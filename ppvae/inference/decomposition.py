r"""The KL term split into index-code mutual information, total correlation and dimension-wise KL
(Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", eq. 2), for any program with one latent site:

.. math::
    \mathbb{E}_{p(n)}\mathrm{KL}(q(z|n) \,\|\, p(z)) =
    \underbrace{\mathrm{KL}(q(z, n) \| q(z) p(n))}_{\text{MI: index-code mutual information}}
    + \underbrace{\mathrm{KL}(q(z) \| \textstyle\prod_j q(z_j))}_{\text{TC: total correlation}}
    + \underbrace{\textstyle\sum_j \mathrm{KL}(q(z_j) \| p(z_j))}_{\text{dimension-wise KL}}

q(z) = (1/N) sum_n q(z | n) is the aggregate posterior over a data set of N examples. With z_i ~ q(z | x_i) for the
M examples of a minibatch, per example i:

    MI_i = log q(z_i | x_i) - log q(z_i),   TC_i = log q(z_i) - log prod_j q(z_ij),
    dimKL_i = log prod_j q(z_ij) - log p(z_i)

so the three sum to log q(z_i | x_i) - log p(z_i), the sampled (dimension-wise) KL, exactly. log q(z_i) and
log q(z_ij) are estimated from the minibatch:

* ``"mws"``, minibatch-weighted sampling (the paper's eq. S6, its experiments' estimator):
  log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M). It is biased (by about -log M where posteriors do not
  overlap), but cheap and what beta-TCVAE was trained with.
* ``"mss"``, minibatch-stratified sampling: the example's own term weighs 1/N and each of the other M - 1 weighs
  (N - 1) / (N (M - 1)). It is consistent: exact when the minibatch is the whole data set (M = N), and MI = TC = 0
  when every posterior is the same factorized distribution. The per-epoch figures in ``metrics.csv`` use it.

Needs a guide and a prior that factorize over the latent dimensions (a mean-field guide, a diagonal prior), and
a guide whose q(z | x_j) depends on x_j alone, so the density of every z_i under every q(. | x_j) is defined.
"""

from __future__ import annotations

import math

import pyro
import torch

from ..batch import as_batch
from ..traces import DATA_PLATE, factors, per_example, sample_sites, weigh

ESTIMATORS = ("mws", "mss")
#: bytes of one block of draws scored against every posterior at once, (rows, M, D) numbers: the rows a block
#: takes are as many as fit, so memory stays bounded (a few such blocks alive at a time) whatever M and D are
BLOCK_BYTES = 2**21
TERMS = ("mi", "tc", "dim_kl")


def check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)} (minibatch-weighted or -stratified "
                         f"sampling), got {estimator!r}")
    return estimator


def log_weights(m: int, dataset_size: int, estimator: str, device=None) -> torch.Tensor:
    """(M, M) log importance weights of q(z_i | x_j) in the estimate of log q(z_i): row i, column j."""
    n = int(dataset_size)
    if n < m:
        raise ValueError(f"the data set size ({n}) must be at least the minibatch size ({m}): q(z) is the average "
                         f"of q(z | x) over the whole data set")
    if check_estimator(estimator) == "mws":
        return torch.full((m, m), -math.log(n * m), device=device)
    if m == 1:
        return torch.full((1, 1), -math.log(n), device=device)
    w = torch.full((m, m), math.log((n - 1) / (n * (m - 1))), device=device)
    return w.fill_diagonal_(-math.log(n))


def aggregate_log_densities(log_q: torch.Tensor, dataset_size: int, estimator: str = "mws", weights=None):
    """From log q(z_ij | x_k) of shape (M', M, D) (row i: the draw z_i; column k: the example x_k; last: the
    dimension), the estimates (log q(z_i), log prod_j q(z_ij)), each of shape (M',): all M rows, or some of them
    with their rows of the (M, M) ``weights``."""
    w = weights if weights is not None else log_weights(log_q.shape[0], dataset_size, estimator, log_q.device)
    log_qz = torch.logsumexp(log_q.sum(-1) + w, dim=1)
    log_prod = torch.logsumexp(log_q + w.unsqueeze(-1), dim=1).sum(-1)
    return log_qz, log_prod


def kl_decomposition(model, guide, batch, dataset_size: int, estimator: str = "mws", *args,
                     plate: str | None = DATA_PLATE, **kwargs) -> dict[str, torch.Tensor]:
    """Per-example terms (shape (M,), with gradients) from one joint draw of the guide and the model:
    ``recon`` (all observed sites), ``mi``, ``tc``, ``dim_kl`` and ``kl`` (= mi + tc + dim_kl, the sampled KL).

    ``model`` and ``guide`` are programs taking ``batch``; ``dataset_size`` is N, the number of examples the
    aggregate posterior averages over (the training set's size in training)."""
    batch = as_batch(batch)
    guide_tr = pyro.poutine.trace(guide).get_trace(batch, *args, **kwargs)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_tr)).get_trace(batch, *args, **kwargs)
    sites = sample_sites(model_tr)
    latents = [name for name, site in sites.items() if not site["is_observed"]]
    guide_sites = sample_sites(guide_tr)
    if len(latents) != 1 or latents[0] not in guide_sites:
        raise ValueError(f"the KL decomposition into mutual information, total correlation and dimension-wise KL "
                         f"needs exactly one latent site with a site in the guide; this program "
                         f"has latent sites {latents}")
    name = latents[0]
    q = factors(guide_sites[name]["fn"], name)
    p = factors(sites[name]["fn"], name)
    z = sites[name]["value"]
    if z.dim() != 2:
        raise ValueError(f"the KL decomposition needs latent site {name!r} of shape (batch, dims), got "
                         f"{tuple(z.shape)}")
    m = z.shape[0]
    recon = torch.zeros(m, device=z.device)
    for site in sites.values():
        if site["is_observed"]:
            recon = recon + per_example(weigh(site["fn"].log_prob(site["value"]), site, False), site, m, plate)
    log_qzx = q.log_prob(z).sum(-1)
    log_pz = p.log_prob(z).sum(-1)
    w = log_weights(m, dataset_size, estimator, z.device)
    log_qz, log_prod = [], []
    step = max(1, BLOCK_BYTES // (m * z.shape[1] * z.element_size()))
    for start in range(0, m, step):  # every draw z_i under every example's posterior: [i, k, j] = log q(z_ij | x_k)
        rows = z[start:start + step]
        try:
            matrix = q.log_prob(rows.unsqueeze(1))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"the guide's q({name} | x) cannot score every draw under every example's posterior "
                             f"({e}); the KL decomposition needs a guide whose distribution "
                             f"is batched over examples") from None
        if tuple(matrix.shape) != (len(rows), m, z.shape[1]):
            raise ValueError(f"the guide's q({name} | x) is not batched over the {m} examples (scoring every draw "
                             f"under every posterior gave shape {tuple(matrix.shape)}, expected "
                             f"{(len(rows), m, z.shape[1])})")
        a, b = aggregate_log_densities(matrix, dataset_size, estimator, w[start:start + step])
        log_qz.append(a)
        log_prod.append(b)
    log_qz, log_prod = torch.cat(log_qz), torch.cat(log_prod)
    return {"recon": recon, "mi": log_qzx - log_qz, "tc": log_qz - log_prod, "dim_kl": log_prod - log_pz,
            "kl": log_qzx - log_pz}


__all__ = ["kl_decomposition", "aggregate_log_densities", "log_weights", "ESTIMATORS", "TERMS"]
