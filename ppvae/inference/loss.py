r"""The training loss of one program: its objective under beta, and the extra terms it names.

.. math:: \mathcal{L}_{\text{main}} = -\mathrm{ELBO}_\beta(x) + \sum_k w_k\, \ell_k(x), \qquad
          \mathcal{L}_g = \sum_{k \in g} w_k\, \ell_k(x) \ \text{for each other parameter group } g

The ELBO term is the spec's objective (Pyro's ``Trace_ELBO`` by default) with beta applied by one handler
(:class:`~ppvae.inference.objectives.KLScale`) around both programs, or an objective that rewrites the KL
(capacity, free bits, beta-TCVAE: :class:`~ppvae.inference.objectives.KLRule`) from per-example terms read off
the traces. A model's tested direct loss for its own
programs (the stock VAE's ``direct_terms``) replaces the traced ELBO where it applies.

**Extra terms** (``losses`` in the spec, or the program's class attribute ``losses``), each a table:

- ``{ model = "model_classify", guide = "guide_classify", objective = "Trace_ELBO", weight = 1.0 }``: another pair
  of the program's methods under an objective, as Pyro's SS-VAE adds its classification loss with a second SVI;
- ``{ loss = "discriminator_loss", weight = 1.0, group = "discriminator" }``: a method of the program returning a
  scalar tensor (summed over the batch, in nats where it is a log-likelihood).

None of them is part of any ELBO ppvae reports. ``group`` (default ``"main"``) says which **parameter group**
the term trains: a program declares groups as ``parameter_groups = {"discriminator": ("discriminator",)}``
(names of its submodules); every other parameter is in ``"main"``. Each group has its own optimiser
(``optimizer.groups.<group>`` overrides the spec's optimiser for it), and each group's loss moves only its own
parameters, so an adversary (FactorVAE's discriminator) is trained against the model, not with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch

from .objectives import (
    ELBO_OBJECTIVES,
    KLRule,
    KLScale,
    ModuleParams,
    base_objective,
    beta_weighted,
    make_objective,
)
from .program import Program, has

MAIN = "main"


@dataclass
class ExtraLoss:
    """One extra term: a pair of the program's methods under an objective, or one method returning a loss."""

    weight: float
    group: str
    method: str | None = None
    model: str | None = None
    guide: str | None = None
    objective: object | None = None

    @property
    def name(self) -> str:
        return self.method or f"{self.model}/{self.guide}"


def extra_losses(p: Program, entries) -> list[ExtraLoss]:
    """The extra terms a spec's ``losses`` (or the program's ``losses`` attribute) names, checked."""
    out = []
    for i, entry in enumerate(entries or ()):
        where = f"losses[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a table such as {{ model = \"model_classify\", guide = "
                             f"\"guide_classify\" "
                             f"}} or {{ loss = \"method\" }}, got {entry!r}")
        unknown = sorted(set(entry) - {"model", "guide", "objective", "weight", "group", "loss"})
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: model, guide, objective, "
                             f"weight, group (a pair of programs) or loss, weight, group (a method)")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight == weight:
            raise ValueError(f"{where}.weight must be a number, got {weight!r}")
        group = entry.get("group", MAIN)
        names = [entry[k] for k in ("model", "guide", "loss") if k in entry]
        for name in names:
            if not isinstance(name, str) or not callable(getattr(p.module, name, None)):
                raise ValueError(f"{where} names {name!r}, which is not a method of {p.name}")
        if "loss" in entry:
            if "model" in entry or "guide" in entry:
                raise ValueError(f"{where} gives both a loss method and a model/guide pair; give one")
            out.append(ExtraLoss(float(weight), group, method=entry["loss"]))
        elif "model" in entry and "guide" in entry:
            objective = make_objective(entry.get("objective", "Trace_ELBO"), p)
            out.append(ExtraLoss(float(weight), group, model=entry["model"], guide=entry["guide"],
                                 objective=objective))
        else:
            raise ValueError(f"{where} needs both model and guide (a pair of programs), or loss (a method)")
    return out


def parameter_groups(p: Program) -> dict[str, list[torch.nn.Parameter]]:
    """{group: parameters}: the program's declared groups (by submodule name), ``"main"`` the rest."""
    declared = getattr(p.module, "parameter_groups", None) or {}
    groups: dict[str, list] = {}
    taken: set[int] = set()
    for group, names in declared.items():
        if group == MAIN:
            raise ValueError(f"{p.name}.parameter_groups may not name the group {MAIN!r}: it holds every parameter "
                             f"no other group takes")
        params = []
        for name in ([names] if isinstance(names, str) else names):
            sub = p.module.get_submodule(name)
            params += [q for q in sub.parameters() if id(q) not in taken]
            taken |= {id(q) for q in sub.parameters()}
        groups[group] = params
    return {MAIN: [q for q in p.module.parameters() if id(q) not in taken], **groups}


class TrainingLoss:
    """The loss of one training step for a program, ``loss(batch, epoch)`` (the main group's) and
    ``group_losses(batch, epoch)`` (every group's), free of host synchronisation."""

    def __init__(self, p: Program, spec: dict, beta, epochs: int, rule: KLRule | None = None,
                 rule_section: str | None = None):
        #: beta (a schedule: it scales the latent sites), and the KL rule that rewrites the KL term, if any
        self.program, self.beta, self.rule, self.epochs = p, beta, rule, epochs
        self.rule_section = rule_section
        objective = self.objective_spec = base_objective(spec, rule_section)
        self.objective = make_objective(objective, p)
        self.objective.data_plate = p.sites().plate
        module = p.module
        self.direct = has(module, "direct_terms") and module.supports_direct_loss(objective) \
            and not spec["train"]["validate"]
        self.analytic_kl = objective["name"] == "TraceMeanField_ELBO"
        self.auxiliary = has(module, "auxiliary_loss")
        # beta for any program: one handler around both programs; pyro.module calls stay out of Pyro's parameter
        # store (one torch optimiser trains the module's parameters)
        self._kl_scale, self._params = KLScale(1.0), ModuleParams()
        self.model_fn, self.guide_fn = (self._params(self._kl_scale(fn)) for fn in (p.model, p.guide))
        entries = spec.get("losses")
        self.extras = extra_losses(p, entries if entries is not None else getattr(module, "losses", None))
        self.groups = parameter_groups(p)
        unknown = sorted({e.group for e in self.extras} - set(self.groups))
        if unknown:
            raise ValueError(f"losses name parameter group(s) {', '.join(unknown)}, which {p.name} does not declare; "
                             f"its groups: {', '.join(self.groups)}")
        self._unscaled = ModuleParams()
        #: beta as a device tensor (a graphed step fills it before each replay); None: the schedule's float
        self.beta_value = None

    def check_kl_objective(self, spec: dict) -> None:
        """A KL rule named in the beta section (its alias) rewrites the terms of the spec's objective, which must
        be a one-particle ELBO."""
        objective = spec["objective"]
        if self.rule_section == "beta" and (objective["name"] not in ELBO_OBJECTIVES
                                            or objective.get("num_particles", 1) != 1):
            raise ValueError(
                f"beta {spec['beta']['name']!r} rewrites the ELBO's KL term, so it needs objective "
                f"Trace_ELBO or TraceMeanField_ELBO with num_particles = 1, not {objective['name']} with "
                f"num_particles = {objective.get('num_particles', 1)}"
            )

    def elbo(self, batch, args, epoch: float) -> torch.Tensor:
        """The negative (beta-weighted) ELBO summed over the batch, or the KL rule's loss."""
        if self.rule is not None:
            return self.rule.loss_of(self.model_fn, self.guide_fn, args, epoch, self.epochs,
                                     plate=self.program.sites().plate, analytic=self.analytic_kl)
        beta = self.beta_value if self.beta_value is not None else self.beta(epoch, self.epochs)
        if self.direct:
            return beta_weighted(*self.program.module.direct_terms(batch, self.objective_spec), beta)
        self._kl_scale.beta = beta
        return self.objective.differentiable_loss(self.model_fn, self.guide_fn, args)

    def log_values(self, epoch: float) -> dict[str, float]:
        """What the metrics record about the KL weighting at ``epoch``: beta, and the rule's own values."""
        return {**self.beta.log_values(epoch, self.epochs),
                **(self.rule.log_values(epoch, self.epochs) if self.rule is not None else {})}

    def group_losses(self, batch, epoch: float) -> dict[str, torch.Tensor]:
        p = self.program
        args = p.prepare(batch)
        losses = {MAIN: self.elbo(batch, args, epoch)}
        if self.auxiliary:  # terms of the model's objective that are not part of its ELBO (M2's classification)
            losses[MAIN] = losses[MAIN] + p.call("auxiliary_loss", args)
        for extra in self.extras:
            term = extra.weight * self._extra(extra, args)
            losses[extra.group] = losses[extra.group] + term if extra.group in losses else term
        return losses

    def __call__(self, batch, epoch: float) -> torch.Tensor:
        losses = self.group_losses(batch, epoch)
        return losses[MAIN] if len(losses) == 1 else sum(losses.values())

    def _extra(self, extra: ExtraLoss, args) -> torch.Tensor:
        p = self.program
        if extra.method is not None:
            with self._unscaled:
                out = p.call(extra.method, args)
        else:
            model = self._unscaled(lambda a: p.binder.call(getattr(p.module, extra.model), a))
            guide = self._unscaled(lambda a: p.binder.call(getattr(p.module, extra.guide), a))
            with pyro.validation_enabled(False):
                out = extra.objective.differentiable_loss(model, guide, args)
        if not isinstance(out, torch.Tensor):  # a pair of programs with no site on this batch (ys=None)
            out = torch.zeros((), device=p.device)
        return out
