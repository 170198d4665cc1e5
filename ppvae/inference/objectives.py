"""Objectives: the Pyro ELBO estimators a spec can name, beta for any program, and the rules that rewrite the KL.

The names are Pyro's own class names (and ``IWAE``), so a reader can look them up in Pyro's documentation.
Every objective gives ``differentiable_loss(model, guide, batch)``: the negative bound summed over the batch,
in nats. ``max_plate_nesting`` comes from the spec, else from the program (``Model.max_plate_nesting``), else
Pyro reads it off a first trace.

beta is one handler, :class:`KLScale`, that the trainer puts around the model and the guide: it scales every
latent sample site by beta, so any program's KL term is weighted without the program knowing about beta.
Capacity, free bits and beta-TCVAE are not a scaling of the KL; they are objectives that rewrite it
(:class:`KLRule`), computed from per-example terms read off the traces, named as the objective or, as before, in
the beta section (an alias).
"""

from __future__ import annotations

import logging
import math

import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import is_identically_one, scale_and_mask
from pyro.infer import (
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    config_enumerate,
)
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import Independent

from ..components.beta import ConstantBeta, check_nonnegative, check_positive, make_beta
from ..registry import BETAS, OBJECTIVES, Component, int_option
from ..traces import DATA_PLATE, elbo_terms, forked_rng, per_example_weight
from .decomposition import check_estimator, kl_decomposition

#: objectives whose estimator is a single-particle ELBO, which the KL-rewriting rules need
ELBO_OBJECTIVES = ("Trace_ELBO", "TraceMeanField_ELBO")


class KLScale(Messenger):
    r"""Weight the KL term of any program by beta: every latent sample site, in the model and the guide alike,
    is scaled by beta, so log p(z) - log q(z | x) is, and the observed sites are not.

    .. math:: \mathcal{L}_\beta = \mathbb{E}_q[\log p(x \mid z)] - \beta\, \mathbb{E}_q[\log q(z \mid x) - \log p(z)]

    ``poutine.scale`` refuses beta = 0, yet it is a real setting (the start of a warm-up); masking the latent
    sites gives exactly the zero-weight objective. This is the only place beta meets a program: no family or
    guide takes a beta argument.
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta if torch.is_tensor(beta) else float(beta)

    def _process_message(self, msg):
        if msg["type"] == "sample":
            if torch.is_tensor(self.beta):  # a device tensor (a graphed step): never read on the host
                if not msg["is_observed"]:
                    msg["scale"] = self.beta * msg["scale"]
            elif not msg["is_observed"] and self.beta != 1.0:
                if self.beta == 0.0:
                    msg["mask"] = False if msg["mask"] is None else msg["mask"] & False
                else:
                    msg["scale"] = self.beta * msg["scale"]


def beta_weighted(recon: torch.Tensor, kl: torch.Tensor, beta) -> torch.Tensor:
    """The beta-ELBO's loss ``beta * kl - recon`` from its two terms, as :class:`KLScale` weighs a traced program:
    beta = 0 drops the KL term (as masking the latent sites does) rather than multiplying it by zero."""
    if not torch.is_tensor(beta) and beta == 0.0:  # a tensor beta (a graphed step) is never read on the host
        return -recon
    return beta * kl - recon


class ModuleParams(Messenger):
    """Answers ``pyro.module`` / ``pyro.param`` calls for a module's own parameters directly instead of through
    Pyro's parameter store. ppvae's one torch optimiser trains ``module.parameters()`` and the checkpoint saves
    ``module.state_dict()``, so the store is unused; routing every lookup through it is overhead on every step and
    would leave a global copy behind."""

    def _process_message(self, msg):
        if msg["type"] == "param" and len(msg["args"]) > 1 and isinstance(msg["args"][1], nn.Parameter):
            msg["value"] = msg["args"][1]
            msg["done"] = msg["stop"] = True


def _particles(num_particles) -> int:
    return int_option(num_particles, 1, "objective num_particles")


def _nesting(max_plate_nesting):
    return float("inf") if max_plate_nesting is None else int_option(max_plate_nesting, 1, "objective "
                                                                                           "max_plate_nesting")


class _RNGNeutralGuess:
    """Where max_plate_nesting is not given, Pyro runs the programs once to find it; that run draws random
    numbers, so here it runs on a forked random state: a result does not depend on whether the nesting was
    declared or guessed."""

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        logger = logging.getLogger("pyro.infer.elbo")  # Pyro logs each guess at INFO; it is routine here
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            with forked_rng():
                return super()._guess_max_plate_nesting(model, guide, args, kwargs)
        finally:
            logger.setLevel(level)


class _SyncFree(_RNGNeutralGuess):
    """The same estimator as the Pyro ELBO it is mixed into, without host synchronisation in the step.

    Pyro's ``differentiable_loss`` calls ``.item()`` on every site's log-probability sum (to report the ELBO
    separately from its surrogate) and checks the loss for NaN, each a device-to-host copy that stalls a GPU.
    For fully reparameterized guides the surrogate *is* the ELBO, so with validation off we return it as is.
    With validation on, or a guide site that needs a score-function term, Pyro's own method runs.
    """

    #: None until the first call decides, on a forked random state, whether every guide site is reparameterized
    _rsample_only = None

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if is_validation_enabled():
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if self._rsample_only is None:
            with forked_rng():
                self._rsample_only = all(site["fn"].has_rsample for _, guide_trace in
                                         self._get_traces(model, guide, args, kwargs)
                                         for site in guide_trace.nodes.values() if site["type"] == "sample")
        if not self._rsample_only:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss + self._particle_loss(model_trace, guide_trace) / self.num_particles
        return loss


class _Unsupported(Exception):
    pass


class _OnePassELBO(Messenger):
    """Trace_ELBO's surrogate loss for one particle, accumulated while the guide and then the model run, for
    fully reparameterized programs: the same sums as Pyro's traces give (each site's log-density, scaled and
    masked, summed; the model replays the guide's draws), without building, copying and pruning the two traces.
    Anything it does not handle (a draw without rsample, an enumerated site, a latent without a guide site)
    raises :class:`_Unsupported`, and Pyro's own estimator is used instead."""

    def __init__(self):
        super().__init__()
        self.values: dict = {}
        self.in_guide = True
        self.loss = 0.0

    def _process_message(self, msg):
        if msg["type"] == "sample" and not self.in_guide and not msg["is_observed"]:
            if msg["name"] not in self.values:
                raise _Unsupported(f"latent site {msg['name']!r} has no site in the guide")
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True

    def _postprocess_message(self, msg):
        if msg["type"] != "sample" or type(msg["fn"]).__name__ == "_Subsample":
            if msg["type"] == "sample" and self.in_guide:  # the plate's indices, replayed in the model
                self.values[msg["name"]] = msg["value"]
            return
        fn = msg["fn"]
        if msg["infer"].get("enumerate") or (self.in_guide and not fn.has_rsample):
            raise _Unsupported(f"site {msg['name']!r} is not reparameterized")
        scale, mask = msg["scale"], msg["mask"]
        if mask is None and (not torch.is_tensor(scale) or scale.dim() == 0):
            # one number weighs the whole site, so only its total counts: the base distribution's log-density
            # summed at once (an Independent's per-event sums are one reduction more, forward and backward)
            base = fn
            while type(base).log_prob is Independent.log_prob:
                base = base.base_dist
            log_p = base.log_prob(msg["value"]).sum()
            log_p = log_p if is_identically_one(scale) else scale * log_p
        else:
            log_p = scale_and_mask(fn.log_prob(msg["value"]), scale, mask).sum()
        if self.in_guide:
            self.values[msg["name"]] = msg["value"]
            self.loss = self.loss + log_p
        else:
            self.loss = self.loss - log_p

    def run(self, model, guide, args, kwargs):
        with self:
            guide(*args, **kwargs)
            self.in_guide = False
            model(*args, **kwargs)
        return self.loss


class _SyncFreeTraceELBO(_SyncFree, Trace_ELBO):
    __doc__ = Trace_ELBO.__doc__

    #: None until the first call decides (on a forked random state) whether the one-pass estimator applies
    _one_pass = None

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if is_validation_enabled() or self.num_particles != 1:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if self._one_pass is None:
            with forked_rng():
                try:
                    _OnePassELBO().run(model, guide, args, kwargs)
                    self._one_pass = True
                except _Unsupported:
                    self._one_pass = False
        if self._one_pass:
            return _OnePassELBO().run(model, guide, args, kwargs)
        return super().differentiable_loss(model, guide, *args, **kwargs)

    @staticmethod
    def _particle_loss(model_trace, guide_trace):
        # -(log p(x, z) - log q(z | x)), scaled and masked per site, as Trace_ELBO's surrogate for rsample sites
        model = sum(site["log_prob_sum"] for site in model_trace.nodes.values() if site["type"] == "sample")
        guide = sum(site["score_parts"].entropy_term.sum() for site in guide_trace.nodes.values()
                    if site["type"] == "sample")
        return guide - model


class _SyncFreeTraceMeanFieldELBO(_SyncFree, TraceMeanField_ELBO):
    __doc__ = TraceMeanField_ELBO.__doc__

    @staticmethod
    def _particle_loss(model_trace, guide_trace):
        # As TraceMeanField_ELBO._differentiable_loss_particle, which also calls .item() on the result.
        elbo = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
                elbo = elbo - scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"]).sum()
            except NotImplementedError:
                elbo = elbo + model_site["log_prob_sum"] - guide_site["score_parts"].entropy_term.sum()
        for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                elbo = elbo - guide_site["score_parts"].entropy_term.sum()
        return -elbo


def _register(name: str, cls: type[ELBO]) -> None:
    def build(*, num_particles: int = 1, vectorize_particles: bool = True, max_plate_nesting: int | None = None,
              **options) -> ELBO:
        allowed = getattr(cls, "options", ())
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"objective {name!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
                             f"num_particles, vectorize_particles, "
                             f"max_plate_nesting{''.join(', ' + a for a in allowed)}")
        elbo = cls(num_particles=_particles(num_particles), vectorize_particles=bool(vectorize_particles),
                   max_plate_nesting=_nesting(max_plate_nesting))
        for key, value in options.items():
            setattr(elbo, key, elbo.check_option(key, value))

        def spec():
            out = {"name": name, "num_particles": int(num_particles), "vectorize_particles": bool(vectorize_particles),
                   **options}
            return out if max_plate_nesting is None else {**out, "max_plate_nesting": int(max_plate_nesting)}

        elbo.spec = spec
        return elbo

    build.__doc__ = cls.__doc__
    OBJECTIVES.register(name)(build)


_register("Trace_ELBO", _SyncFreeTraceELBO)  # E_q[log p(x,z) - log q(z|x)], Monte Carlo with reparameterized z
_register("TraceMeanField_ELBO", _SyncFreeTraceMeanFieldELBO)  # the same with KL(q || p) in closed form
class _TraceEnumELBO(_RNGNeutralGuess, TraceEnum_ELBO):
    __doc__ = TraceEnum_ELBO.__doc__ + """

    ppvae's option ``enumerate = "parallel"`` (or ``"sequential"``) enumerates every discrete site of the guide
    that does not say otherwise, as Pyro's examples do by wrapping the guide in ``config_enumerate(guide,
    "parallel", expand=True)``; the program itself is not changed.
    """

    options = ("enumerate",)
    enumerate = None

    @staticmethod
    def check_option(key: str, value):
        if value not in ("parallel", "sequential"):
            raise ValueError(f"objective.enumerate must be \"parallel\" or \"sequential\", got {value!r}")
        return value

    def _enumerated(self, guide):
        return guide if self.enumerate is None else config_enumerate(guide, self.enumerate, expand=True)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(model, self._enumerated(guide), *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return super().loss_and_grads(model, self._enumerated(guide), *args, **kwargs)

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        return super()._guess_max_plate_nesting(model, self._enumerated(guide), args, kwargs)


class _TraceGraphELBO(_RNGNeutralGuess, TraceGraph_ELBO):
    __doc__ = TraceGraph_ELBO.__doc__

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The surrogate loss's gradient (score-function terms, Rao-Blackwellized) with the value of the negative
        ELBO: Pyro's TraceGraph_ELBO gives only ``loss_and_grads``, whose surrogate has another value."""
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return surrogate - surrogate.detach() + (-elbo).detach()


_register("TraceEnum_ELBO", _TraceEnumELBO)  # discrete latents summed out exactly (infer={"enumerate": "parallel"})
_register("TraceGraph_ELBO", _TraceGraphELBO)  # score-function gradients with Rao-Blackwellization


@OBJECTIVES.register("IWAE")
class IWAE(_RNGNeutralGuess, RenyiELBO):
    r"""The importance-weighted bound of Burda et al. (2016), Pyro's ``RenyiELBO`` at alpha = 0:

    .. math:: \mathcal{L}_K(x) = \mathbb{E}_{z_{1:K} \sim q(z|x)}
              \Big[\log \frac{1}{K} \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}\Big]
              \;\le\; \log p(x)

    L_1 is the ELBO and L_K rises with K towards log p(x). The log-mean-exp is taken per example (the data
    plate is independent), with the K particles vectorised. ``RenyiELBO`` only gives ``loss_and_grads``;
    ``differentiable_loss`` here is the same estimate as a tensor, valid for reparameterized guides.
    """

    #: the plate over examples along which the weights are per example (a program may name it otherwise)
    data_plate: str | None = DATA_PLATE

    def __init__(self, *, num_particles: int = 5, vectorize_particles: bool = True,
                 max_plate_nesting: int | None = None):
        self._max_plate_nesting_option = max_plate_nesting
        super().__init__(alpha=0.0, num_particles=_particles(num_particles),
                         max_plate_nesting=_nesting(max_plate_nesting), vectorize_particles=bool(vectorize_particles))

    def spec(self) -> dict:
        out = {"name": "IWAE", "num_particles": self.num_particles, "vectorize_particles": self.vectorize_particles}
        mpn = self._max_plate_nesting_option
        return out if mpn is None else {**out, "max_plate_nesting": int(mpn)}

    def log_weights(self, model, guide, *args, pathwise: bool = True, **kwargs) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for each particle and example: shape (K, examples).

        Each site's log-density is summed over every dimension but the particles' and the data plate's, so the
        weights are per example whatever other plates the program has. A latent site outside the data plate
        (a global latent) has no per-example weight: :class:`NotPerExample` says so. ``pathwise`` refuses guide
        sites without a reparameterized sampler, whose weights the training loss could not differentiate;
        evaluation, which needs no gradient, turns it off (any proposal gives a valid importance-sampling
        estimate, e.g. M2's sampled label).
        """
        vectorized = self.vectorize_particles and self.num_particles > 1
        weights = []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            w = 0.0
            for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
                for name, site in trace.nodes.items():
                    if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
                        continue
                    if pathwise and sign < 0 and not site["fn"].has_rsample:
                        raise ValueError(f"IWAE needs a reparameterized guide, but site {name!r} is not")
                    w = w + sign * per_example_weight(site, vectorized, self.data_plate)
            weights.append(w)
        return weights[0] if vectorized else torch.stack(weights)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w = self.log_weights(model, guide, *args, **kwargs)
        return -(torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum()


def make_objective(spec: dict | str, model=None) -> ELBO:
    """The objective a spec names, with ``max_plate_nesting`` from the spec, else from the model's declaration."""
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    if not is_kl_rule(options["name"]) and options.get("max_plate_nesting") is None \
            and getattr(model, "max_plate_nesting", None) is not None:
        options["max_plate_nesting"] = model.max_plate_nesting
    return OBJECTIVES.build(options.pop("name"), **options)


def is_kl_rule(name: str) -> bool:
    """Whether the objective ``name`` is one that rewrites the KL term (:class:`KLRule`)."""
    cls = OBJECTIVES.get(name)
    return isinstance(cls, type) and issubclass(cls, KLRule)


def kl_weighting(spec: dict):
    """How a spec weighs the KL term: (beta schedule, KL rule or None, the section naming the rule or None).

    beta scales the latent sites (:class:`KLScale`); a KL rule rewrites the KL term instead. A rule is named as
    the objective, or under its old name in the beta section (an alias: beta is then constant 1)."""
    beta = make_beta(spec["beta"])
    objective = make_objective(spec["objective"]) if is_kl_rule(spec["objective"]["name"]) else None
    if isinstance(beta, KLRule) and objective is not None:
        raise ValueError(f"beta {spec['beta']['name']!r} and objective {spec['objective']['name']!r} both rewrite the "
                         f"KL term; name one of them (as the objective)")
    if isinstance(beta, KLRule):
        return ConstantBeta(value=1.0), beta, "beta"
    if objective is not None:
        if beta.spec() != ConstantBeta(value=1.0).spec():  # it would be ignored: the rule weighs the KL itself
            raise ValueError(f"objective {spec['objective']['name']!r} rewrites the KL term with its own weights, so "
                             f"beta must stay constant 1; got {beta.spec()}")
        return beta, objective, "objective"
    return beta, None, None


def base_objective(spec: dict, section: str | None) -> dict:
    """The one-particle ELBO whose terms a KL rule rewrites: the spec's objective where the rule is named in the
    beta section (its alias), Trace_ELBO where the rule is the objective; the spec's objective without a rule."""
    return {"name": "Trace_ELBO", "num_particles": 1} if section == "objective" else spec["objective"]


class KLRule(Component):
    """An objective that rewrites the ELBO's KL term instead of scaling it: its loss is computed from the
    per-example reconstruction and KL terms of one particle, read off the traces of any program
    (:func:`~ppvae.traces.elbo_terms`; the KL in closed form where registered with ``analytic``).

    Named as the objective (``objective.name = "free_bits"``, ``objective.threshold = 2``) the terms are
    Trace_ELBO's. Named in the beta section as before (``beta.name = "free_bits"``) it is the same objective under
    an alias: the run's beta schedule is then constant 1, and the terms are those of the spec's objective
    (Trace_ELBO, or TraceMeanField_ELBO for the KL in closed form), which must be a one-particle ELBO.

    ``loss(recon, kl, epoch, num_epochs)`` is the rule on the terms: ``recon`` has shape (batch,), ``kl`` (batch,
    latent dims of all latent sites) where ``per_dim_kl`` is set, else (batch,); summed over the batch like Pyro's
    ELBO losses.
    """

    per_dim_kl = False
    #: why a step under the rule cannot be replayed as one CUDA graph (None: it can)
    why_not_graphed: str | None = None

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        """What the metrics record about the KL weighting at this point of training (its ``beta`` column)."""
        return {"beta": 1.0}

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        raise NotImplementedError

    def loss_of(self, model, guide, args, epoch: float, num_epochs: int, *, plate: str | None = DATA_PLATE,
                analytic: bool = False) -> torch.Tensor:
        """The rule's loss for the programs ``model`` and ``guide`` on the arguments ``args``."""
        recon, kl = elbo_terms(model, guide, args, analytic=analytic, per_dim=self.per_dim_kl, plate=plate)
        return self.loss(recon, kl, epoch, num_epochs)


@OBJECTIVES.register("capacity")
@BETAS.register("capacity")
class CapacityKL(KLRule):
    r"""Capacity-controlled KL (Burgess et al. 2018, "Understanding disentangling in beta-VAE"):

    .. math:: \mathcal{L} = \mathbb{E}_q[\log p(x \mid z)] - \gamma \, |\mathrm{KL}(q \| p) - C(t)|,
              \qquad C(t) = \text{capacity} \cdot \min(1, t / \text{anneal\_epochs})

    The KL (batch mean, nats per example) is pulled towards a target C that rises linearly, so the code is
    allowed to carry information gradually. The paper used gamma = 1000 and C up to 25 nats.
    """

    def __init__(self, *, gamma: float = 1000.0, capacity: float = 25.0, anneal_epochs: float = 50.0):
        self.gamma = check_nonnegative("gamma", gamma)
        self.capacity = check_nonnegative("capacity", capacity)
        self.anneal_epochs = check_positive("anneal_epochs", anneal_epochs)

    why_not_graphed = "the capacity target moves every step"

    def target(self, epoch: float) -> float:
        return self.capacity * min(1.0, max(0.0, epoch / self.anneal_epochs))

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        return {"beta": self.gamma, "capacity": self.target(epoch)}

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        n = recon.shape[0]
        return -recon.sum() + self.gamma * n * (kl.mean() - self.target(epoch)).abs()


@OBJECTIVES.register("free_bits")
@BETAS.register("free_bits")
class FreeBits(KLRule):
    r"""Free bits (Kingma et al. 2016, appendix C): each latent dimension's KL, averaged over the minibatch,
    costs nothing below ``threshold`` nats:

    .. math:: \mathcal{L} = \mathbb{E}_q[\log p(x \mid z)] - \sum_{d} \max\big(\lambda,
              \mathbb{E}_{x \in \text{batch}} \mathrm{KL}_d(x)\big)

    so the optimiser gains nothing by pushing a dimension's KL under lambda, which keeps units from
    collapsing. Needs, at every latent site, a prior and guide that factorize over dimensions.
    """

    per_dim_kl = True

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = check_nonnegative("threshold", threshold)

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        return {"beta": 1.0, "free_bits": self.threshold}

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        n = recon.shape[0]
        return -recon.sum() + n * kl.mean(0).clamp(min=self.threshold).sum()


@OBJECTIVES.register("tcvae")
@BETAS.register("tcvae")
class TCVAE(KLRule):
    r"""beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in Variational Autoencoders"): the KL
    split into index-code mutual information, total correlation and dimension-wise KL, each with its own weight:

    .. math:: \mathcal{L} = \mathbb{E}_q[\log p(x \mid z)] - \alpha\, I_q(z; n)
              - \beta\, \mathrm{KL}\big(q(z) \,\|\, \textstyle\prod_j q(z_j)\big)
              - \gamma \textstyle\sum_j \mathrm{KL}\big(q(z_j) \,\|\, p(z_j)\big)

    The aggregate posterior q(z) is estimated from the minibatch (:mod:`ppvae.inference.decomposition`):
    ``estimator = "mws"`` (minibatch-weighted sampling, the paper's) or ``"mss"`` (stratified, consistent).
    ``dataset_size`` is N, the examples q(z) averages over; 0 means the training set's size, which the trainer
    fills in and records in the run's spec. alpha = beta = gamma = 1 is the ELBO; the paper penalises the TC
    (beta = 6 on dSprites). Needs a guide and a prior that factorize over the dimensions of one latent site.
    """

    #: the KL is decomposed (MI, TC, dimension-wise KL) over the minibatch, not taken per example
    decomposed = True

    def __init__(self, *, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0, estimator: str = "mws",
                 dataset_size: int = 0):
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        self.gamma = check_nonnegative("gamma", gamma)
        self.estimator = check_estimator(estimator)
        self.dataset_size = int_option(dataset_size, 0, "beta dataset_size (0: the training set's size)")

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        return {"beta": self.beta}

    def loss_from_terms(self, terms: dict, epoch: float, num_epochs: int):
        return -(terms["recon"] - self.alpha * terms["mi"] - self.beta * terms["tc"]
                 - self.gamma * terms["dim_kl"]).sum()

    def loss_of(self, model, guide, args, epoch: float, num_epochs: int, *, plate: str | None = DATA_PLATE,
                analytic: bool = False) -> torch.Tensor:
        terms = kl_decomposition(model, guide, args, self.dataset_size, self.estimator, plate=plate)
        return self.loss_from_terms(terms, epoch, num_epochs)
