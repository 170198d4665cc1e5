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

import contextlib
import math
import warnings

import torch
import pyro
import pyro.distributions as dist
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask

from ..components.likelihoods import bits_per_dim
from ..inference.contract import DATA_PLATE, as_batch, batches, sample_sites, warn_once
from ..inference.contract import batch_size as num_examples
from ..inference.objectives import IWAE, NotPerExample, forked_rng
from ..inference.program import module_of, program


@contextlib.contextmanager
def seeded_eval(seed: int, device: torch.device | str = "cpu", module: torch.nn.Module | None = None):
    """Run a block reproducibly without disturbing anyone else's randomness.

    Inside the block the random state is ``torch.manual_seed(seed)`` (CPU, and the CUDA device ``device``
    names) and ``module`` is in eval mode; afterwards, even after an exception, the global random state and
    the module's training mode are what they were. Evaluation and figures use it, so that looking at a
    model mid-training does not change the training run.
    """
    device = torch.device(device)
    module = module_of(module) if module is not None else None
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


def _data_frame(site: dict, plate: str | None = DATA_PLATE):
    return next((f for f in site["cond_indep_stack"] if f.name == plate and f.dim is not None), None)


def _data_rows(value: torch.Tensor, site: dict, plate: str | None = DATA_PLATE) -> int | None:
    """How many examples a site's tensor holds along the data plate (the subsample, where there is one)."""
    frame = _data_frame(site, plate)
    return value.shape[frame.dim] if frame is not None and value.dim() >= -frame.dim else None


def per_example(value: torch.Tensor, site: dict, rows: int, plate: str | None = DATA_PLATE) -> torch.Tensor:
    """A site's log-density (or KL) tensor as one number per example of the data plate (``plate``): shape
    (rows,). A site outside the data plate is shared equally by the rows, so the rows still sum to the whole
    term."""
    frame = _data_frame(site, plate)
    if frame is None:
        return (value.sum() / rows).expand(rows)
    if value.dim() < -frame.dim:
        value = value.reshape((1,) * (-frame.dim - value.dim()) + tuple(value.shape))
    value = value.movedim(frame.dim, 0)
    return value.reshape(value.shape[0], -1).sum(1).expand(rows)


def _weigh(value: torch.Tensor, site: dict, per_dim: bool) -> torch.Tensor:
    # The site's scale and mask have its batch shape; a per-dimension term has one more (last) dimension.
    scale, mask = site["scale"], site["mask"]
    if per_dim:
        scale = scale.unsqueeze(-1) if torch.is_tensor(scale) else scale
        mask = mask.unsqueeze(-1) if torch.is_tensor(mask) else mask
    return scale_and_mask(value, scale, mask)


def site_terms(model, guide, batch, *args, analytic: bool = True, per_dim: bool = False,
               plate: str | None = DATA_PLATE, **kwargs) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """({observed site: log-likelihood}, {latent site: KL}) per example from one joint draw, with gradients.

    Each tensor has shape (rows,), one per example of the data plate (its subsample, where the program
    subsamples); with ``per_dim`` each KL has shape (rows, dims of the site), which needs a prior and guide that
    factorize over the site's dimensions. ``analytic`` uses a closed-form KL where Pyro has one registered
    (weighted by the guide site's scale and mask, as TraceMeanField_ELBO does), else log q(z) - log p(z) at the
    sampled z, each weighted by its own site's scale and mask, as Trace_ELBO does. ``plate`` names the data
    plate (the program's, :class:`~ppvae.inference.program.Sites`).
    """
    guide_tr = pyro.poutine.trace(guide).get_trace(batch, *args, **kwargs)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_tr)).get_trace(batch, *args, **kwargs)
    guide_sites = sample_sites(guide_tr)
    terms = []  # (kind, name, weighted tensor, the site whose plates it has)
    for name, site in sample_sites(model_tr).items():
        if site["is_observed"]:
            terms.append(("observed", name, _weigh(site["fn"].log_prob(site["value"]), site, False), site))
            continue
        if name not in guide_sites:
            raise ValueError(f"latent site {name!r} has no site in the guide, so its KL term is not defined here "
                             f"(an enumerated discrete latent is summed out by TraceEnum_ELBO's loss instead)")
        g = guide_sites[name]
        q, p, z = g["fn"], site["fn"], site["value"]
        if per_dim:
            q, p = _factors(q, name), _factors(p, name)
        kl = None
        if analytic:
            try:
                kl = _weigh(kl_divergence(q, p), g, per_dim)
            except NotImplementedError:
                pass
        if kl is None:
            kl = _weigh(q.log_prob(z), g, per_dim) - _weigh(p.log_prob(z), site, per_dim)
        terms.append(("kl", name, kl, g))
    rows = None  # the examples along the data plate: the batch, or the program's subsample of it
    for kind, _, value, site in terms:
        rows = _data_rows(value[..., 0] if per_dim and kind == "kl" else value, site, plate)
        if rows is not None:
            break
    rows = rows if rows is not None else num_examples(batch)
    observed, kls = {}, {}
    for kind, name, value, site in terms:
        if kind == "observed":
            observed[name] = per_example(value, site, rows, plate)
        elif per_dim:
            kls[name] = torch.stack([per_example(value[..., j], site, rows, plate) for j in range(value.shape[-1])], -1)
        else:
            kls[name] = per_example(value, site, rows, plate)
    return observed, kls


def elbo_terms(model, guide, batch, *args, analytic: bool = True, per_dim: bool = False,
               plate: str | None = DATA_PLATE, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, kl) from one joint draw of the guide and model traces, with gradients.

    ``reconstruction`` (all observed sites) has shape (batch,). ``kl`` (all latent sites) has shape (batch,),
    or with ``per_dim`` (batch, the latent dimensions of every site side by side), which needs a prior and
    guide that factorize over dimensions at every site.
    """
    observed, kls = site_terms(model, guide, as_batch(batch), *args, analytic=analytic, per_dim=per_dim, plate=plate,
                               **kwargs)
    rows = next(iter({**observed, **kls}.values())).shape[0] if observed or kls else num_examples(batch)
    zero = torch.zeros(rows, device=_device(batch))
    recon = sum(observed.values(), zero)
    kl = torch.cat(list(kls.values()), -1) if per_dim else sum(kls.values(), zero)
    return recon, kl


def _factors(d, name: str):
    """The per-dimension factors of a diagonal distribution (an ``Independent`` over one event dim)."""
    while isinstance(d, dist.ExpandedDistribution):
        d = d.base_dist
    if isinstance(d, (dist.Independent, torch.distributions.Independent)) and d.reinterpreted_batch_ndims == 1:
        return d.base_dist
    raise ValueError(
        f"a KL per latent dimension needs a prior and guide that factorize over the dimensions of latent site "
        f"{name!r}, but got {type(d).__name__}; use a diagonal prior (normal, learned_normal, laplace, student_t) "
        f"with the 'normal' guide"
    )


def _device(batch) -> torch.device:
    batch = getattr(batch, "source", batch)  # a program's arguments: the batch they came from
    return next(iter(as_batch(batch).values())).device


@torch.no_grad()
def evaluate_elbo(model, data, *, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean ELBO, reconstruction and KL per example (nats) over ``data`` (a tensor x or a batch mapping), with
    the terms of each observed site (``recon_sites``) and latent site (``kl_sites``); deterministic for a given
    ``seed`` and leaves the global random state untouched, so evaluating does not change a training run."""
    data = as_batch(data)
    p = program(model)
    plate = p.sites(data).plate
    sums_obs: dict[str, float] = {}
    sums_kl: dict[str, float] = {}
    with seeded_eval(seed, _device(data), p.module):
        for part in batches(data, batch_size):
            observed, kls = site_terms(p.model, p.guide, p.prepare(part), plate=plate)
            for name, v in observed.items():
                sums_obs[name] = sums_obs.get(name, 0.0) + v.sum()
            for name, v in kls.items():
                sums_kl[name] = sums_kl.get(name, 0.0) + v.sum()
    n = num_examples(data)
    recon_sites = {k: float(v) / n for k, v in sums_obs.items()}
    kl_sites = {k: float(v) / n for k, v in sums_kl.items()}
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
    p = program(model)
    known = p.module.__dict__.get("_ppvae_vectorizes")
    if known is not None:
        return known
    small = as_batch({k: v[:3] for k, v in as_batch(batch).items()})
    args = p.prepare(small)
    ok = True
    try:
        with torch.no_grad(), forked_rng(), _sampled_enumeration():
            lw = _iwae(p, 2, True).log_weights(p.model, p.guide, args, pathwise=False)
        ok = tuple(lw.shape) == (2, args.rows)
    except NotPerExample:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError):
        ok = False
    p.module.__dict__["_ppvae_vectorizes"] = ok
    if not ok:
        warn_once(p.module, "vectorize", f"{p.name}'s programs do not broadcast over a leading particle "
                                      f"dimension, so K-sample estimates loop over the particles (slower); see "
                                      f"ppvae.Model's docstring, 'Vectorized particles'")
    return ok


@contextlib.contextmanager
def _sampled_enumeration():
    """Evaluation samples a site marked for enumeration (M2's label) on purpose: a valid proposal, no gradient
    needed; Pyro's warning that only TraceEnum_ELBO enumerates is then noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*If you want to enumerate sites, you need to use TraceEnum_ELBO")
        yield


def _iwae(model, k: int, vectorize: bool) -> IWAE:
    p = program(model)
    iwae = IWAE(num_particles=k, vectorize_particles=vectorize, max_plate_nesting=p.max_plate_nesting)
    iwae.data_plate = p.sites().plate
    return iwae


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
        with _sampled_enumeration():
            out.append(_iwae(p, k, vectorize).log_weights(p.model, p.guide, args, pathwise=False))
    return args.restore(torch.cat(out), dim=1)  # the data's order, where a transform reordered the rows


@torch.no_grad()
def iwae_log_likelihood(model, x, num_samples: int = 1000, *, batch_size: int = 100, seed: int = 0,
                        return_weights: bool = False):
    r"""The importance-weighted estimate of log p(x) per example (Burda et al. 2016), in nats:

    .. math:: \log p(x) \approx \log \frac{1}{K} \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}, \quad z_k \sim q(z|x)

    A lower bound in expectation that tightens as K grows. ``x`` is a tensor or a batch mapping. Returns a
    tensor of shape (N,), and with ``return_weights`` also the (N, K) log weights (for PSIS diagnostics).
    Deterministic for a seed and leaves the global random state alone.
    """
    estimates, weights = [], []
    data = as_batch(x)
    with seeded_eval(seed, _device(data), model):
        for part in batches(data, batch_size):
            lw = log_importance_weights(model, part, num_samples)
            estimates.append(torch.logsumexp(lw, 0) - math.log(num_samples))
            if return_weights:
                weights.append(lw.T.cpu())
    ll = torch.cat(estimates)
    return (ll, torch.cat(weights)) if return_weights else ll


__all__ = ["seeded_eval", "site_terms", "elbo_terms", "evaluate_elbo", "log_importance_weights",
           "iwae_log_likelihood", "particles_vectorize"]
