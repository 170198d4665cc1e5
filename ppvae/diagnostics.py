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

from .evaluate import elbo_terms, seeded_eval

KHAT_THRESHOLD = 0.7
#: ArviZ fits the Pareto tail to the largest min(K/5, 3 sqrt(K)) weights and gives k-hat = inf for fewer than 5
MIN_PSIS_SAMPLES = 21
ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def kl_per_dimension(vae, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> torch.Tensor:
    """Mean KL(q(z_d | x) || p(z_d)) over ``x`` for each latent dimension d, in nats (analytic where registered).

    Raises ``ValueError`` for priors or guides that do not factorize over dimensions (mixture, VampPrior,
    flows), where a per-dimension KL is not defined.
    """
    total = None
    with seeded_eval(seed, x.device, vae):
        for start in range(0, x.shape[0], batch_size):
            _, kl = elbo_terms(vae.model, vae.guide, x[start:start + batch_size], per_dim=True)
            total = kl.sum(0) if total is None else total + kl.sum(0)
    return total / x.shape[0]


@torch.no_grad()
def active_units(vae, x: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 num_draws: int = 1000, seed: int = 0) -> tuple[int, torch.Tensor]:
    """(number of active units, Cov_x(E_q[z_d | x]) for each d), Burda et al. (2016).

    E_q[z | x] is the guide's mean where it has one in closed form (the Gaussian guide). For guides without
    one (flows), it is the average of ``num_draws`` seeded draws, and the Monte Carlo noise that this adds to
    the variance across x, E_x[Var_q(z_d | x)] / num_draws, is subtracted, so a dead unit is not counted as
    active because of sampling noise.
    """
    means, noise = [], 0.0
    with seeded_eval(seed, x.device, vae):
        for s in range(0, x.shape[0], batch_size):
            q = vae.q.posterior(x[s:s + batch_size])
            try:
                means.append(q.mean)
            except NotImplementedError:
                z = q.sample((num_draws,))
                means.append(z.mean(0))
                noise = noise + z.var(0).sum(0) / num_draws
    variance = torch.cat(means).var(0)
    if torch.is_tensor(noise):
        variance = (variance - noise / x.shape[0]).clamp_min(0.0)
    return int((variance > threshold).sum()), variance


@torch.no_grad()
def mutual_information(vae, x: torch.Tensor, *, seed: int = 0) -> float:
    r"""I(x; z) under q, in nats, estimated on the batch ``x`` (at most log N for N examples):

    .. math:: \hat I = \frac{1}{N}\sum_i \Big[\log q(z_i \mid x_i)
              - \log \frac{1}{N}\sum_j q(z_i \mid x_j)\Big], \quad z_i \sim q(z \mid x_i)
    """
    with seeded_eval(seed, x.device, vae):
        q = vae.q.posterior(x)
        z = q.sample()
    try:  # every z_i under every q(z | x_j): needs a posterior that broadcasts, such as a Gaussian
        cross = q.log_prob(z[:, None, :])  # (N_i, N_j)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"the mutual-information estimate needs a guide whose posterior broadcasts over a "
                         f"batch of z (the 'normal' guide); this guide's does not ({e})") from None
    log_qz = torch.logsumexp(cross, 1) - math.log(x.shape[0])
    return float((q.log_prob(z) - log_qz).mean())


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
def posterior_inference_data(vae, x: torch.Tensor, *, num_draws: int = 500, seed: int = 0):
    """Draws z ~ q(z | x_i) for each example as ``arviz.InferenceData`` (one chain; dims example, latent)."""
    import arviz as az

    with seeded_eval(seed, x.device, vae):
        draws = vae.q.posterior(x).sample((num_draws,))  # (draw, example, latent)
    return az.from_dict(
        posterior={"z": draws.cpu().numpy()[None]},
        coords={"example": np.arange(x.shape[0]), "latent": np.arange(draws.shape[-1])},
        dims={"z": ["example", "latent"]},
    )


def collapse_warnings(latent_dim: int, active: int, kl_total: float, kl_dims: list[float] | None) -> list[str]:
    """Human-readable warnings when the code carries (almost) no information about x."""
    warnings = []
    if active == 0 or kl_total < 0.1:
        warnings.append(f"posterior collapse: {active} of {latent_dim} latent units are active and the KL is "
                        f"{kl_total:.3g} nats; the decoder ignores z. Try KL warm-up (beta.name = \"linear\"), "
                        f"cyclical annealing or free bits.")
    elif active < latent_dim:
        warnings.append(f"partial posterior collapse: only {active} of {latent_dim} latent units are active "
                        f"(Cov_x E_q[z_d] > {ACTIVE_THRESHOLD}); the others follow the prior.")
    if kl_dims is not None:
        dead = [d for d, k in enumerate(kl_dims) if k < 0.01]
        if dead and active > 0:
            warnings.append(f"latent dimensions {dead} carry less than 0.01 nats of KL each.")
    return warnings
