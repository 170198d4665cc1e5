"""Particles and posterior draws of a program: whether it broadcasts over a leading particle dimension, IWAE
estimators along its data plate, the guide's draws and its posterior means.

The functions take a :class:`~ppvae.inference.program.Program` (anything with its ``guide``, ``prepare``,
``sites``, ``module`` and ``max_plate_nesting``); they import none, so the program itself uses them, and
:mod:`ppvae.evaluate` wraps them for any model.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine

from ..batch import as_batch, batch_size, take
from ..traces import (
    NotPerExample,
    batch_device,
    forked_rng,
    plate_nesting,
    sample_sites,
    sampled_enumeration,
    seeded_eval,
)
from .contract import warn_once
from .objectives import IWAE


def vectorizes(p, batch) -> bool:
    """Whether ``model``'s programs broadcast over a leading particle dimension (checked once on a few examples,
    then remembered); a program that does not is evaluated with a loop over particles, with a warning."""
    known = p.module.__dict__.get("_ppvae_vectorizes")
    if known is not None:
        return known
    small = as_batch({k: v[:3] for k, v in as_batch(batch).items()})
    args = p.prepare(small)
    ok = True
    try:
        with torch.no_grad(), forked_rng(), sampled_enumeration():
            lw = iwae(p, 2, True).log_weights(p.model, p.guide, args, pathwise=False)
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


def iwae(p, k: int, vectorize: bool) -> IWAE:
    """The IWAE estimator of ``k`` particles for a program, per example along its data plate."""
    iwae = IWAE(num_particles=k, vectorize_particles=vectorize, max_plate_nesting=p.max_plate_nesting)
    iwae.data_plate = p.sites().plate
    return iwae


def continuous_latents(p, x) -> list[str]:
    """The guide's continuous latent sites (discrete ones have no posterior mean to vary)."""
    with torch.no_grad():
        tr = poutine.trace(p.guide).get_trace(p.prepare(take(as_batch(x), slice(0, 2))))
    return [n for n, s in sample_sites(tr).items() if not s["fn"].support.is_discrete]


@torch.no_grad()
def posterior_means(p, x, *, num_draws: int = 1000, seed: int = 0,
                    sites: list[str] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{site: (E_q[z | x] per example, its Monte Carlo variance)}, each (N, dims of the site), in the data's
    order, for the guide's continuous latent sites (or ``sites``).

    Where the guide gives a site's mean in closed form and that mean depends on x alone (the same in two
    draws), it is exact and its variance is zero. Otherwise (flows; sites that depend on other latents, as in a
    hierarchical guide) the mean is the average of ``num_draws`` seeded draws of the site's conditional mean
    (or of its value, where there is no closed form), with the variance of that average.
    """
    data = as_batch(x)
    args = p.prepare(data)
    with seeded_eval(seed, batch_device(data), p.module):
        sites = sites if sites is not None else continuous_latents(p, getattr(args, "source", data))
        traces = [poutine.trace(p.guide).get_trace(args) for _ in range(2)]
        out = {}
        for name in sites:
            first, second = (site_mean(t.nodes[name]) for t in traces)
            if first is not None and torch.equal(first, second):
                out[name] = (args.restore(first.flatten(1)), torch.zeros_like(first.flatten(1)))
        rest = [n for n in sites if n not in out]
        if rest:
            draws = guide_draws(p, args, num_draws, rest, means=True)
            for n in rest:
                out[n] = (draws[n].mean(0), draws[n].var(0) / num_draws)
    return {n: out[n] for n in sites}


def site_mean(site):
    try:
        return site["fn"].mean
    except NotImplementedError:
        return None


@torch.no_grad()


def guide_draws(p, data, num_draws: int, sites=None, means: bool = False) -> dict[str, torch.Tensor]:
    """{site: (num_draws, N, dims of the site)} draws of the guide's sites (with ``means``, each draw's
    conditional mean where the site has one in closed form, else its value), in the data's order. One guide run
    under a plate of draws where the program broadcasts (the encoder runs once), else one run per draw."""
    args = p.prepare(data)
    n = batch_size(args)

    def read(site):
        m = site_mean(site) if means else None
        return (m if m is not None else site["value"])

    if vectorizes(p, args.source):
        with pyro.plate("_num_draws", num_draws, dim=-(plate_nesting(p.guide, args, p.max_plate_nesting) + 1)):
            tr = poutine.trace(p.guide).get_trace(args)
        chosen = sites if sites is not None else list(sample_sites(tr))
        return {k: args.restore(read(tr.nodes[k]).expand(num_draws, *read(tr.nodes[k]).shape[1:])
                                .reshape(num_draws, n, -1), dim=1) for k in chosen}
    trs = [poutine.trace(p.guide).get_trace(args) for _ in range(num_draws)]
    chosen = sites if sites is not None else list(sample_sites(trs[0]))
    return {k: args.restore(torch.stack([read(t.nodes[k]).reshape(n, -1) for t in trs]), dim=1) for k in chosen}


__all__ = ["vectorizes", "iwae", "continuous_latents", "posterior_means", "site_mean", "guide_draws"]
