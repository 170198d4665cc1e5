"""Likelihoods p(x | z): turn the decoder's output into a distribution over the data.

A likelihood owns the decoder's output width (``params_per_dim`` outputs per data dimension), checks that the
data lies in its support, and builds a distribution whose event shape is the data's event shape, so the
observed site's ``log_prob`` is one number per example.

For grey levels in [0, 1]: ``bernoulli`` (soft targets, not normalised), ``continuous_bernoulli`` (its
normalised fix). For real values: ``gaussian`` and ``laplace``, with a fixed or learned scale. For 8-bit data
(level / 255): ``categorical`` (256-way softmax) and ``discretized_logistic`` (PixelCNN++'s mixture); these
are probability mass functions, so their negative log-likelihoods are code lengths (bits per dimension).

Why one module of some 550 lines: each likelihood is one self-contained registered class (its support check, its
decoder width, its distribution) beside the shared base class; they are read and compared side by side, as a
tutorial on likelihood choice does.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import nn

from ..registry import LIKELIHOODS, Component, int_option


class Likelihood(Component, nn.Module):
    """Base class. ``likelihood(decoder_output)`` returns p(x | z) with the data's event shape."""

    #: decoder outputs per data dimension (a learned-variance Gaussian needs two: mean and scale)
    params_per_dim: int = 1
    #: whether p(x | z) is a mass function, so that bits per dimension can mean something on data in its support
    #: (a density on continuous data does not give code lengths); see ``gives_code_length``
    discrete: bool = False

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The expected data E[x | z], used for pictures of samples and reconstructions."""
        raise NotImplementedError

    def log_prob_sum(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sum over the batch of log p(x | z): what a training step needs (a subclass may have a faster kernel)."""
        return self(out).log_prob(x).sum()

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` saying what is wrong if ``x`` cannot be data for this likelihood."""

    def gives_code_length(self, x: torch.Tensor) -> bool:
        """Whether -log p(x | z) of the data ``x`` is a code length, so that bits per dimension mean something:
        a mass function on data in its support (not a density, and not a score of data outside the support)."""
        return self.discrete

    def _event(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        # The data's dimensions form one event, so log_prob is one number per example (and per particle).
        return d.to_event(len(self.event_shape))


def _check_range(x: torch.Tensor, lo: float, hi: float, what: str) -> None:
    xmin, xmax = x.min().item(), x.max().item()
    if not (lo <= xmin and xmax <= hi):  # written so that NaN fails it too
        raise ValueError(
            f"{what} likelihood needs data in [{lo:g}, {hi:g}], but the data ranges over "
            f"[{xmin:.4g}, {xmax:.4g}]; rescale the data (e.g. divide 8-bit images by 255) "
            f"or choose a likelihood for real-valued data such as 'gaussian'"
        )


_LEVEL_TOL = 1e-3  # float32 k/255 is within 1e-5 of a level; real-valued data are usually far off


def chunks(x: torch.Tensor, rows: int = 1024):
    """Consecutive slices of ``x`` along its first axis: checks of a whole data set in bounded memory."""
    return (x[start:start + rows] for start in range(0, max(1, x.shape[0]), rows))


def _check_levels(x: torch.Tensor, levels: int, what: str) -> None:
    _check_range(x, 0.0, 1.0, what)
    top = levels - 1
    worst_off, value = 0.0, None
    for part in chunks(x.detach()):
        k = part.flatten() * top
        off = (k - k.round()).abs()
        i = int(off.argmax()) if off.numel() else 0
        if off.numel() and off[i].item() > worst_off:
            worst_off, value = off[i].item(), part.flatten()[i].item()
    if worst_off > _LEVEL_TOL:
        data = "8-bit data" if levels == 256 else f"data on {levels} levels"
        raise ValueError(
            f"{what} likelihood needs {data}: values k/{top} for integer k in 0..{top}, but found "
            f"{value:.4g} (= {value * top:.2f}/{top}); set the likelihood's levels to the data's number of levels "
            f"(e.g. levels = 17 for sklearn's digits), quantise the data (x = round(x * {top}) / {top}), or "
            f"choose a likelihood for continuous data such as 'continuous_bernoulli' or 'gaussian'"
        )


def _to_level(value: torch.Tensor, levels: int) -> torch.Tensor:
    return torch.round(value * (levels - 1)).clamp(0, levels - 1).long()


def _params_last(out: torch.Tensor, event_shape: tuple[int, ...], k: int) -> torch.Tensor:
    """Decoder output ``(*batch, k * event_shape[0], *event_shape[1:])`` -> ``(*batch, *event_shape, k)``.

    The k parameter groups are stacked on the data's first axis, so group j is ``out[..., j*C:(j+1)*C, ...]``
    for images and ``out[..., j*D:(j+1)*D]`` for vectors; ``.unbind(-1)`` gives the k groups.
    """
    n = len(event_shape)
    return out.unflatten(-n, (k, event_shape[0])).movedim(-n - 1, -1)


def inverse_softplus(y: float) -> float:
    """softplus^{-1}(y) = log(exp(y) - 1), without overflow for large y."""
    return y + math.log(-math.expm1(-y))


@LIKELIHOODS.register("bernoulli")
class Bernoulli(Likelihood):
    r"""Independent Bernoulli pixels with logits from the decoder.

    .. math:: \log p(x \mid z) = \sum_i x_i \log \sigma(f_i(z)) + (1 - x_i) \log(1 - \sigma(f_i(z)))

    As in Kingma & Welling (2014) and Pyro's VAE example, grey levels in [0, 1] are accepted as soft targets
    (the binary cross-entropy); the result is then not a normalised density of grey-level data, which is what
    the continuous Bernoulli corrects.
    """

    discrete = True

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        # validate_args=False: the support check is done once on the data set, not on every batch.
        return _BernoulliEvent(dist.Bernoulli(logits=out, validate_args=False), len(self.event_shape))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def log_prob_sum(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # The same sum as log_prob(...).sum(), in torch's fused cross-entropy kernel with its reduction.
        return -F.binary_cross_entropy_with_logits(out, x, reduction="sum")

    def check_support(self, x: torch.Tensor) -> None:
        _check_range(x, 0.0, 1.0, "the Bernoulli")

    def gives_code_length(self, x: torch.Tensor) -> bool:
        # A mass function on binary images only: grey levels are scored by an unnormalised cross-entropy.
        return all(bool(((part == 0) | (part == 1)).all()) for part in chunks(x))


class _BernoulliEvent(dist.Independent):
    """Independent Bernoulli pixels scored as one event: sum_i x_i l_i - softplus(l_i).

    The same number as summing ``Bernoulli(logits=l).log_prob(x)`` over the event. When x is broadcast over
    particles without gradients (the IWAE estimate scoring 1,000 particles per image), it is computed without
    a copy of x per particle (the dot product is an einsum): about twice as fast there.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.base_dist.logits
        # Training (gradients, one particle): torch's fused cross-entropy kernel is faster forward and back.
        if torch.is_grad_enabled() or logits.shape == value.shape:
            return super().log_prob(value)
        n = self.reinterpreted_batch_ndims
        logits, value = logits.flatten(-n), value.flatten(-n)
        return torch.einsum("...d,...d->...", logits, value) - F.softplus(logits).sum(-1)


@LIKELIHOODS.register("continuous_bernoulli")
class ContinuousBernoulli(Likelihood):
    r"""The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the normalised density on [0, 1] whose
    unnormalised form is the Bernoulli likelihood of grey levels, with logits :math:`\eta_i = f_i(z)`.

    .. math::
        \log p(x \mid z) = \sum_i x_i \log \lambda_i + (1 - x_i) \log(1 - \lambda_i) + \log C(\lambda_i),
        \qquad \lambda_i = \sigma(\eta_i), \quad
        C(\lambda) = \frac{2 \tanh^{-1}(1 - 2\lambda)}{1 - 2\lambda} = \frac{\eta}{\tanh(\eta / 2)}

    The mean is :math:`E[x] = 1 / (1 - e^{-\eta}) - 1 / \eta`, not :math:`\lambda`, so pictures use it.

    Reference: G. Loaiza-Ganem and J. P. Cunningham, "The continuous Bernoulli: fixing a pervasive error in
    variational autoencoders", NeurIPS 2019.
    """

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return self._event(_LogitContinuousBernoulli(logits=out, validate_args=False))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return _LogitContinuousBernoulli(logits=out, validate_args=False).mean

    def check_support(self, x: torch.Tensor) -> None:
        _check_range(x, 0.0, 1.0, "the continuous Bernoulli")


class _LogitContinuousBernoulli(dist.ContinuousBernoulli):
    """Pyro's continuous Bernoulli with the log normaliser and the mean computed from the logits.

    torch computes both from the clamped probability lambda = sigmoid(eta) (clamped to [eps, 1 - eps]), so
    beyond |eta| ~ 16 in float32 the normaliser stops growing (0.23 nats too small at |eta| = 20, 0.63 at 30)
    and log_prob is no longer a normalised density; decoders reach such logits on MNIST's constant border
    pixels. In terms of eta the same quantities are well conditioned everywhere except at eta = 0, where a
    Taylor series takes over (torch does the same for lambda within its ``lims`` of 1/2).
    """

    _taylor_below = 0.1  # the series' next terms are below 1e-9 here, and the closed forms are accurate above

    def _near_half(self):
        eta = self.logits
        near = eta.abs() < self._taylor_below
        # Keep the closed form away from 0/0, so that torch.where's unused branch has no NaN gradient.
        safe = torch.where(near, torch.full_like(eta, self._taylor_below), eta)
        return eta, near, safe

    def _cont_bern_log_norm(self):
        eta, near, safe = self._near_half()
        closed = torch.log(safe.abs()) - torch.log(torch.tanh(safe.abs() / 2))
        eta2 = eta * eta
        taylor = math.log(2.0) + eta2 / 12.0 - 7.0 * eta2 * eta2 / 1440.0
        return torch.where(near, taylor, closed)

    @property
    def mean(self) -> torch.Tensor:
        eta, near, safe = self._near_half()
        closed = 0.5 + 0.5 / torch.tanh(safe / 2) - 1.0 / safe
        taylor = 0.5 + eta / 12.0 - eta.pow(3) / 720.0
        return torch.where(near, taylor, closed)


_SCALE_MODES = ("none", "global", "pixel", "decoder")


class _LocationScale(Likelihood):
    """Shared scale handling of location-scale families; a subclass names its ``family`` (a Pyro
    distribution taking ``(loc, scale)``).

    The decoder gives the location. The scale is fixed (``learn_scale="none"``), one learned number
    (``"global"``), a learned number per data dimension (``"pixel"``), or a second decoder output per data
    dimension (``"decoder"``). A learned scale is ``softplus(raw) + min_scale``: positive by construction and
    bounded below, because data with constant values (MNIST's zero borders) would otherwise let the scale
    shrink to zero and log p(x | z) grow without bound. It starts at ``scale``; for ``"decoder"`` that holds
    where the decoder outputs zero, since the raw output is shifted by softplus^-1(scale - min_scale).
    """

    family: type  # set by each subclass

    def __init__(self, event_shape, *, scale: float = 0.1, learn_scale: str = "none", min_scale: float = 1e-3):
        super().__init__(event_shape)
        what = f"{self.registry_name} likelihood"
        if not scale > 0:
            raise ValueError(f"{what} scale must be > 0, got {scale}")
        if learn_scale not in _SCALE_MODES:
            raise ValueError(f"{what} learn_scale must be one of: {', '.join(_SCALE_MODES)}; got {learn_scale!r}")
        if not min_scale >= 0:
            raise ValueError(f"{what} min_scale must be >= 0, got {min_scale}")
        if learn_scale != "none" and not scale > min_scale:
            raise ValueError(f"{what} scale (the initial scale) must be > min_scale when the scale is learned, "
                             f"got scale {scale} and min_scale {min_scale}")
        self.scale = float(scale)
        self.learn_scale = learn_scale
        self.min_scale = float(min_scale)
        self.params_per_dim = 2 if learn_scale == "decoder" else 1
        self._raw_init = inverse_softplus(self.scale - self.min_scale) if learn_scale != "none" else 0.0
        if learn_scale == "global":
            self.raw_scale = nn.Parameter(torch.tensor(self._raw_init))
        elif learn_scale == "pixel":
            self.raw_scale = nn.Parameter(torch.full(self.event_shape, self._raw_init))

    def spec(self) -> dict:
        out = super().spec()
        if self.learn_scale == "none":
            # The learned-scale options mean nothing for a fixed scale; leaving them out keeps the spec of a
            # fixed-scale likelihood what it was before they existed, so older run directories compare equal.
            del out["learn_scale"], out["min_scale"]
        return out

    def _loc_scale(self, out: torch.Tensor):
        if self.learn_scale == "none":  # a tensor filled on the device: no number copied from the host each step
            return out, torch.full_like(out, self.scale)
        if self.learn_scale == "decoder":
            loc, raw = _params_last(out, self.event_shape, 2).unbind(-1)
            return loc, F.softplus(raw + self._raw_init) + self.min_scale
        return out, F.softplus(self.raw_scale) + self.min_scale

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return self._event(self.family(*self._loc_scale(out)))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self._loc_scale(out)[0]


@LIKELIHOODS.register("gaussian")
class Gaussian(_LocationScale):
    r"""Independent Gaussian data with the decoder's mean and a fixed or learned standard deviation.

    .. math:: \log p(x \mid z) = \sum_i \log \mathcal{N}(x_i; f_i(z), \sigma_i^2)
              = -\sum_i \left[\frac{(x_i - f_i(z))^2}{2 \sigma_i^2} + \log \sigma_i + \tfrac12 \log 2\pi\right]

    With fixed sigma (the default) the reconstruction term is a scaled squared error plus a constant
    -D (log sigma + log(2 pi) / 2), which is why small sigma weights reconstruction against the KL. Learning
    sigma (``learn_scale``: one number, one per pixel, or from the decoder as in Kingma & Welling 2014,
    appendix C.2) lets the data set that weight; see :class:`_LocationScale` for the parametrisation.
    """

    family = dist.Normal


@LIKELIHOODS.register("laplace")
class Laplace(_LocationScale):
    r"""Independent Laplace data with the decoder's location and a fixed or learned scale b.

    .. math:: \log p(x \mid z) = -\sum_i \left[\frac{|x_i - f_i(z)|}{b_i} + \log 2 b_i\right]

    A fixed scale makes the reconstruction term a scaled L1 error, which is less sensitive to outlying
    pixels than the squared error and blurs less (Isola et al., "Image-to-image translation with conditional
    adversarial networks", CVPR 2017, choose L1 over L2 for that reason). Scale options as for
    :class:`Gaussian`.
    """

    family = dist.Laplace


class _OnLevels(constraints.Constraint):
    """Values k / (levels - 1) for integers k in 0..levels-1, up to float rounding."""

    is_discrete = True
    event_dim = 0

    def __init__(self, levels: int):
        self.levels = levels
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        k = value * (self.levels - 1)
        return (k >= -_LEVEL_TOL) & (k <= self.levels - 1 + _LEVEL_TOL) & ((k - k.round()).abs() <= _LEVEL_TOL)


class _LevelCategorical(dist.TorchDistribution):
    """A categorical over ``levels`` grey levels whose values are the floats k / (levels - 1).

    ``logits`` has the levels on its last axis; batch shape is ``logits.shape[:-1]`` and the event is scalar.
    """

    arg_constraints = {"logits": constraints.real_vector}

    def __init__(self, logits: torch.Tensor, validate_args=None):
        self._categorical = dist.Categorical(logits=logits, validate_args=False)
        self.levels = logits.shape[-1]
        super().__init__(self._categorical.batch_shape, torch.Size(), validate_args=validate_args)

    @property
    def logits(self) -> torch.Tensor:
        return self._categorical.logits  # normalised: log-probabilities of the levels

    @property
    def support(self) -> constraints.Constraint:
        return _OnLevels(self.levels)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_LevelCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new._categorical = self._categorical.expand(batch_shape)
        new.levels = self.levels
        super(_LevelCategorical, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._categorical.log_prob(_to_level(value, self.levels))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self._categorical.sample(sample_shape).to(self.logits.dtype) / (self.levels - 1)

    @property
    def mean(self) -> torch.Tensor:
        k = torch.arange(self.levels, dtype=self.logits.dtype, device=self.logits.device)
        return (self._categorical.probs * k).sum(-1) / (self.levels - 1)


@LIKELIHOODS.register("categorical")
class Categorical(Likelihood):
    r"""A ``levels``-way categorical for every data dimension, as in PixelRNN / PixelCNN.

    .. math:: \log p(x \mid z) = \sum_i \log \operatorname{softmax}(f_i(z))_{k_i}, \qquad k_i = x_i (L - 1)

    The decoder gives L logits per data dimension (``params_per_dim = levels``; group k of the decoder's
    first axis holds level k's logits). Data stay floats k / (L - 1) in [0, 1], as 8-bit images scaled by
    1/255 are; the distribution maps them to levels and its samples back. No order between levels is assumed,
    which costs parameters (L per dimension) but fits any histogram, e.g. MNIST's spikes at 0 and 1.

    Reference: A. van den Oord, N. Kalchbrenner and K. Kavukcuoglu, "Pixel recurrent neural networks",
    ICML 2016.
    """

    discrete = True

    def __init__(self, event_shape, *, levels: int = 256):
        super().__init__(event_shape)
        self.levels = int_option(levels, 2, "categorical likelihood levels")
        self.params_per_dim = self.levels

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        logits = _params_last(out, self.event_shape, self.levels)
        return self._event(_LevelCategorical(logits, validate_args=False))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return _LevelCategorical(_params_last(out, self.event_shape, self.levels), validate_args=False).mean

    def check_support(self, x: torch.Tensor) -> None:
        _check_levels(x, self.levels, "the categorical")


class _DiscretizedLogisticMixture(dist.TorchDistribution):
    """A mixture of logistics on [-1, 1], discretised to ``levels`` bins, over values k / (levels - 1).

    ``logits``, ``locs`` and ``log_scales`` have the K components on their last axis; locations and scales
    are in the [-1, 1] units of PixelCNN++. Batch shape is ``logits.shape[:-1]`` and the event is scalar.
    """

    arg_constraints = {"logits": constraints.real_vector, "locs": constraints.real_vector,
                       "log_scales": constraints.real_vector}

    def __init__(self, logits, locs, log_scales, levels: int = 256, validate_args=None):
        # PixelCNN++'s floor on log-scales: e^-7 is already a ninth of an 8-bit bin, so narrower logistics
        # hardly change the probabilities but make exp(-log_scale) and the gradients blow up.
        self.logits, self.locs, self.log_scales = torch.broadcast_tensors(logits, locs, log_scales.clamp(min=-7.0))
        self.levels = int(levels)
        super().__init__(self.logits.shape[:-1], torch.Size(), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return _OnLevels(self.levels)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_DiscretizedLogisticMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.logits.shape[-1:]
        new.logits, new.locs, new.log_scales = (t.expand(shape) for t in (self.logits, self.locs, self.log_scales))
        new.levels = self.levels
        super(_DiscretizedLogisticMixture, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # PixelCNN++'s discretized_mix_logistic_loss (Salimans et al. 2017), one channel at a time; the edge
        # bins are chosen by level index, which for 8-bit data is its test x < -0.999 / x > 0.999.
        if self._validate_args:
            self._validate_sample(value)
        level = _to_level(value, self.levels).unsqueeze(-1)
        half = 1.0 / (self.levels - 1)  # half a bin in [-1, 1] units
        centered = (2.0 * half * level - 1.0) - self.locs
        inv_s = torch.exp(-self.log_scales)
        plus_in = inv_s * (centered + half)
        min_in = inv_s * (centered - half)
        log_cdf_plus = plus_in - F.softplus(plus_in)  # level 0 takes the whole left tail
        log_one_minus_cdf_min = -F.softplus(min_in)  # the top level takes the whole right tail
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        mid_in = inv_s * centered
        log_pdf_mid = mid_in - self.log_scales - 2.0 * F.softplus(mid_in)
        # Where the bin's mass is below 1e-5 the float32 difference of two cdfs has lost its digits; the
        # density at the centre times the bin width is then the better value (it underestimates the mass by
        # at most a factor sinh(h/s) / (h/s), small while bins are narrow against the scale, as with 8 bits).
        interior = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)),
                               log_pdf_mid + math.log(2.0 * half))
        log_probs = torch.where(level == 0, log_cdf_plus,
                                torch.where(level == self.levels - 1, log_one_minus_cdf_min, interior))
        return torch.logsumexp(log_probs + F.log_softmax(self.logits, -1), -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            k = dist.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            full = shape + self.logits.shape[-1:]
            loc = self.locs.expand(full).gather(-1, k).squeeze(-1)
            log_scale = self.log_scales.expand(full).gather(-1, k).squeeze(-1)
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp(1e-5, 1.0 - 1e-5)
            x = (loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1.0, 1.0)
            return torch.round((x + 1.0) / 2.0 * (self.levels - 1)) / (self.levels - 1)

    @property
    def mean(self) -> torch.Tensor:
        # Exact: E[k] = sum_{j=1}^{L-1} P(k >= j), and P(k >= j) is the logistic's mass above the boundary
        # between levels j - 1 and j (the edge bins take the tails, so nothing is lost at -1 and +1).
        inv_s = torch.exp(-self.log_scales)
        tail = torch.zeros_like(self.locs)
        for j in range(1, self.levels):
            boundary = -1.0 + (2 * j - 1) / (self.levels - 1)
            tail = tail + torch.sigmoid((self.locs - boundary) * inv_s)
        return (torch.softmax(self.logits, -1) * tail).sum(-1) / (self.levels - 1)


@LIKELIHOODS.register("discretized_logistic")
class DiscretizedLogistic(Likelihood):
    r"""The discretized logistic mixture of PixelCNN++ for data on ``levels`` grey levels (8-bit images).

    Each data dimension, rescaled to :math:`y = 2x - 1 \in [-1, 1]` with bin half-width
    :math:`h = 1 / (L - 1)`, gets a mixture of K logistics with weights :math:`\pi`, means :math:`\mu` and
    scales :math:`s`, integrated over its bin:

    .. math::
        p(x \mid z) = \prod_i \sum_k \pi_{ik} \left[\sigma\!\left(\frac{y_i + h - \mu_{ik}}{s_{ik}}\right)
                      - \sigma\!\left(\frac{y_i - h - \mu_{ik}}{s_{ik}}\right)\right],

    where the lowest bin extends to :math:`-\infty` and the highest to :math:`+\infty`. The decoder gives
    ``params_per_dim = 3 * components`` numbers per data dimension: K mixture logits, then K means, then K
    log-scales (floored at -7), as groups stacked on its first axis. Channels are modelled independently,
    each with its own mixture: PixelCNN++'s mixture shared across R, G, B with a linear dependence of each
    channel's mean on the previous channels is left out (for grey images the two agree). ``log_prob``
    follows the reference code, including its fallback for bins that hold less than 1e-5; the mean
    (for pictures) is the exact expected value of the discretised mixture.

    Reference: T. Salimans, A. Karpathy, X. Chen and D. P. Kingma, "PixelCNN++: improving the PixelCNN with
    discretized logistic mixture likelihood and other modifications", ICLR 2017.
    """

    discrete = True

    def __init__(self, event_shape, *, components: int = 5, levels: int = 256):
        super().__init__(event_shape)
        self.components = int_option(components, 1, "discretized_logistic likelihood components")
        self.levels = int_option(levels, 2, "discretized_logistic likelihood levels")
        self.params_per_dim = 3 * self.components

    def _mixture(self, out: torch.Tensor) -> _DiscretizedLogisticMixture:
        params = _params_last(out, self.event_shape, self.params_per_dim)
        logits, locs, log_scales = params.split(self.components, -1)
        return _DiscretizedLogisticMixture(logits, locs, log_scales, self.levels, validate_args=False)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return self._event(self._mixture(out))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self._mixture(out).mean

    def check_support(self, x: torch.Tensor) -> None:
        _check_levels(x, self.levels, "the discretized_logistic")


def bits_per_dim(nats_per_example: float, num_dims: int) -> float:
    """Convert a negative log-likelihood per example in nats to bits per data dimension."""
    return nats_per_example / (num_dims * math.log(2.0))
