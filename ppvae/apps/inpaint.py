r"""Inpainting by conditioning: observe some pixels, infer z from them, fill the rest.

With the observed pixels x_o and the missing x_m, the model's conditional is
p(x_m | x_o) = \int p(x_m | z) p(z | x_o) dz. Two ways to reach p(z | x_o):

``importance`` (sampling importance resampling with the guide): z_k ~ q(z | x~), x~ = x_o with the missing pixels
    set to the mean training image, weighted by w_k = p(x_o | z_k) p(z_k) / q(z_k | x~); the fill is
    sum_k w_k E[x_m | z_k] and the held-out log-likelihood log sum_k w_k p(x_m | z_k) (self-normalized weights).
``gibbs`` (pseudo-Gibbs, Rezende et al. 2014, appendix F): alternate z ~ q(z | x_o, x_m) and x_m = E[x_m | z]
    for ``steps`` steps, starting from the mean image; the fill is the average of the last half of the chain's
    E[x_m | z] and the held-out log-likelihood log mean_t p(x_m | z_t) over the same states.

The observed pixels are never changed. p(x_o | z) is the observed site's log-density summed over the observed pixels
only, read off the model's trace (:meth:`~ppvae.inference.program.Program.proposals`), which needs a distribution
that factorizes over pixels (all of ppvae's likelihoods do); so any program whose model observes x works, not only
the stock VAE. Baselines on the same masks: the mean training image, and the nearest training image on the observed
pixels.
"""

from __future__ import annotations

import math

import torch

from ..batch import as_batch
from ..inference.program import conditional, module_of, program
from ..traces import seeded_eval

MASKS = ("center", "left", "top", "quadrant", "random:P")
METHODS = ("importance", "gibbs")


def make_mask(kind: str, event_shape, seed: int = 0) -> torch.Tensor:
    """A boolean mask of ``event_shape`` (True = observed) hiding: the central half square (``center``), the left
    or top half, the top-left quadrant, or a random share P of the pixels (``random:0.5``)."""
    shape = tuple(event_shape)
    if len(shape) != 3:
        raise ValueError(f"masks are for images (channels, height, width); the data have event shape {shape}")
    _, h, w = shape
    hidden = torch.zeros(shape, dtype=torch.bool)
    if kind == "center":
        hidden[:, h // 4: h - h // 4, w // 4: w - w // 4] = True
    elif kind == "left":
        hidden[:, :, : w // 2] = True
    elif kind == "top":
        hidden[:, : h // 2] = True
    elif kind == "quadrant":
        hidden[:, : h // 2, : w // 2] = True
    elif kind.startswith("random:"):
        try:
            p = float(kind.split(":", 1)[1])
        except ValueError:
            p = -1.0
        if not 0.0 < p < 1.0:
            raise ValueError(f"mask {kind!r}: the share of hidden pixels must be between 0 and 1, e.g. random:0.5")
        g = torch.Generator().manual_seed(seed)
        hidden[:, torch.rand(h, w, generator=g) < p] = True
    else:
        raise ValueError(f"unknown mask {kind!r}; choose one of: {', '.join(MASKS)}")
    return ~hidden


def check_mask(mask: torch.Tensor, event_shape) -> torch.Tensor:
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if tuple(mask.shape) != tuple(event_shape):
        raise ValueError(f"the mask has shape {tuple(mask.shape)} but the data have event shape {tuple(event_shape)}")
    if not bool(mask.any()):
        raise ValueError("the mask observes no pixel: nothing to condition on")
    if bool(mask.all()):
        raise ValueError("the mask observes every pixel: nothing to fill")
    return mask


def _masked(lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sums over the elements of x where ``mask`` (of x's event shape) holds; ``lp`` has them flattened last."""
    return (lp * mask.flatten().to(lp.dtype)).sum(-1)


def _images(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return value.reshape(*value.shape[:-1], *x.shape[1:])


@torch.no_grad()
def inpaint(model, x, mask: torch.Tensor, *, fill: torch.Tensor, method: str = "importance",
            num_samples: int = 100, steps: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(filled images, held-out log-likelihood per example in nats): ``x`` (a tensor, or a batch with the other
    arguments a program reads) with its unobserved pixels (``mask`` False) filled by the model conditioned on the
    observed ones; ``fill`` (an image, e.g. the mean training image) starts the guide. The observed pixels are
    returned unchanged. Any program whose model observes x at one site (its traces give the rest)."""
    if conditional(model):
        raise ValueError(f"{type(module_of(model)).__name__} conditions on a label; inpainting is "
                         f"for models of x alone")
    if method not in METHODS:
        raise ValueError(f"unknown inpainting method {method!r}; choose one of: {', '.join(METHODS)}")
    batch = as_batch(x)
    x = batch["x"]
    mask = check_mask(mask, x.shape[1:]).to(x.device)
    p = program(model)
    start = torch.where(mask, x, fill.to(x.device))
    with seeded_eval(seed, x.device, p.module):
        if method == "importance":
            prop = p.proposals({**batch, "x": start}, batch, num_samples)
            log_w = prop.log_w + _masked(prop.lp, mask)                              # (K, N)
            w = log_w.softmax(0)
            mean = _images((w.unsqueeze(-1) * prop.mean).sum(0), x)
            held_out = torch.logsumexp(log_w.log_softmax(0) + _masked(prop.lp, ~mask), 0)
        else:
            current, means, lps = start, [], []
            for t in range(steps):
                prop = p.proposals({**batch, "x": current}, batch, 1)
                m = _images(prop.mean[0], x)
                current = torch.where(mask, x, m)
                if t >= steps // 2:
                    means.append(m)
                    lps.append(_masked(prop.lp[0], ~mask))
            mean = torch.stack(means).mean(0)
            held_out = torch.logsumexp(torch.stack(lps), 0) - math.log(len(lps))
    return torch.where(mask, x, mean), held_out


def nearest_fill(train: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, chunk: int = 2000) -> torch.Tensor:
    """Each example filled from the training image nearest to it on the observed pixels (squared distance)."""
    flat_mask = mask.flatten()
    xo = x.flatten(1)[:, flat_mask]
    best_d, best_i = None, None
    for s in range(0, len(train), chunk):
        t = train[s:s + chunk].flatten(1)[:, flat_mask]
        d = torch.cdist(xo, t)
        v, i = d.min(1)
        if best_d is None:
            best_d, best_i = v, i + s
        else:
            better = v < best_d
            best_d, best_i = torch.where(better, v, best_d), torch.where(better, i + s, best_i)
    return torch.where(mask, x, train[best_i])


def bernoulli_log_prob(p: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Held-out log-likelihood of a fixed fill read as Bernoulli means (the baselines' figure), per example."""
    p = p.clamp(eps, 1 - eps)
    return _masked((x * p.log() + (1 - x) * (1 - p).log()).flatten(1), ~mask)


@torch.no_grad()
def inpaint_report(model, train: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, *, method: str = "importance",
                   num_samples: int = 100, steps: int = 50, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """({way: held-out log-likelihood and squared error per example}, the model's filled images) for the model
    and the two baselines on the same mask; log-likelihoods are nats over the held-out pixels, the baselines'
    read as Bernoulli means (given only for data in [0, 1])."""
    fill = train.mean(0)
    filled, ll = inpaint(model, x, mask, fill=fill, method=method, num_samples=num_samples, steps=steps, seed=seed)
    mean_fill = torch.where(mask, x, fill)
    nearest = nearest_fill(train, x, mask)

    def error(f):
        return float((f - x).flatten(1).square().sum(1).mean())

    unit = bool(((x >= 0) & (x <= 1)).all())
    out = {method: {"held_out_log_likelihood": float(ll.mean()), "squared_error": error(filled)},
           "mean_image": {"held_out_log_likelihood": float(bernoulli_log_prob(mean_fill, x, mask).mean()) if unit
                          else None, "squared_error": error(mean_fill)},
           "nearest_image": {"squared_error": error(nearest)}}
    return out, filled


def pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The average-pooled image: each factor x factor block replaced by its mean (the low-resolution observation)."""
    return torch.nn.functional.avg_pool2d(x.flatten(0, -4), factor).view(*x.shape[:-2], x.shape[-2] // factor,
                                                                        x.shape[-1] // factor)


@torch.no_grad()
def upscale(model, low: torch.Tensor, factor: int, *, num_samples: int = 100, seed: int = 0, noise: float = 0.02,
            truth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Super-resolution as conditioning on a low-resolution observation y = pool(x):

    .. math:: y \mid z \sim \mathcal N\big(\mathrm{pool}(\mu(z)),\ \mathrm{pool}(v(z)) / f^2 + \sigma_0^2\big)

    with mu, v the observed site's per-pixel mean and variance (the pooled mean of f^2 independent pixels, moment
    matched), sigma_0 = ``noise`` for quantization. z_k ~ q(z | upsampled y), weighted by p(y | z) p(z) / q(z | .);
    returns the weighted E[x | z] and, given the high-resolution ``truth``, its log-likelihood
    log sum_k w_k p(x | z_k) per example (nats). Any program whose model observes x at one site."""
    if conditional(model):
        raise ValueError(f"{type(module_of(model)).__name__} conditions on a label; super-resolution is "
                         f"for models of x alone")
    if factor not in (2, 4):
        raise ValueError(f"--factor must be 2 or 4, got {factor}")
    shape = tuple(low.shape[1:-2]) + (low.shape[-2] * factor, low.shape[-1] * factor)
    if len(shape) != 3:
        raise ValueError(f"super-resolution is for images (channels, height, width); the low-resolution data have "
                         f"shape {tuple(low.shape[1:])}")
    start = torch.nn.functional.interpolate(low, scale_factor=factor, mode="nearest")
    p = program(model)
    with seeded_eval(seed, low.device, p.module):
        prop = p.proposals(start, truth if truth is not None else start, num_samples)
        k, n = prop.log_w.shape
        mean = prop.mean.reshape(k * n, *shape)
        var = prop.var.reshape(k * n, *shape)
        scale = (pool(var, factor) / factor ** 2 + noise ** 2).sqrt()
        log_y = torch.distributions.Normal(pool(mean, factor), scale).log_prob(low.repeat(k, 1, 1, 1))
        log_w = log_y.reshape(k, n, -1).sum(-1) + prop.log_w
        w = log_w.softmax(0)
        image = (w.view(k, n, 1, 1, 1) * mean.view(k, n, *shape)).sum(0)
        ll = torch.logsumexp(log_w.log_softmax(0) + prop.lp.sum(-1), 0) if truth is not None else None
    return image, ll


@torch.no_grad()
def upscale_report(model, x: torch.Tensor, factor: int, *, num_samples: int = 100, seed: int = 0) -> tuple[dict, dict]:
    """({way: log-likelihood of the high-resolution truth and squared error per example}, {way: images}) for the
    model conditioned on pool(x) and for bilinear upsampling (its pixels read as Bernoulli means)."""
    low = pool(x, factor)
    image, ll = upscale(model, low, factor, num_samples=num_samples, seed=seed, truth=x)
    bilinear = torch.nn.functional.interpolate(low, scale_factor=factor, mode="bilinear", align_corners=False)

    def error(f):
        return float((f - x).flatten(1).square().sum(1).mean())

    everything = torch.zeros_like(x[0], dtype=torch.bool)  # every pixel is held out
    report = {"model": {"log_likelihood": float(ll.mean()), "squared_error": error(image)},
              "bilinear": {"log_likelihood": float(bernoulli_log_prob(bilinear, x, everything).mean()),
                           "squared_error": error(bilinear)}}
    coarse = torch.nn.functional.interpolate(low, scale_factor=factor, mode="nearest")
    return report, {"low": coarse, "bilinear": bilinear.clamp(0, 1), "model": image}
