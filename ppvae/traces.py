r"""The trace toolkit: what inference and evaluation both need to read Pyro traces of any program.

The data plate and the per-example reduction of a site's log-density (every dimension summed but the data
plate's), the ELBO's terms per observed and per latent site, importance weights per example, the sites of a trace,
and random states that evaluation may use without disturbing training's (``forked_rng``, ``seeded_eval``,
``untouched``). It imports nothing of ppvae but the batch: every other layer may import it.

    ELBO(x) = sum_observed E_q[log p(x_o | ...)] - sum_latent E_q[log q(z_l | ...) - log p(z_l | ...)]

Each observed site gives a reconstruction term; each latent site a KL term, analytic where Pyro has it registered
(lower variance; conditional on the draws of the site's parents) and log q(z) - log p(z) at the sampled z
otherwise, each weighted by its own site's scale and mask as Trace_ELBO does. A site outside the data plate is
shared equally by the examples, so the rows still sum to the whole term.

**Evaluation is in nats.** Inside ``seeded_eval`` (every evaluation, figure and per-epoch ELBO) a program's own
scales (``poutine.scale``, a subsampling plate's N / B) are taken off its sample sites: they weigh a training
objective, and a scaled log-density is not one in nats, nor is an IWAE of scaled weights a bound on log p(x).
Masks stay. Where a program scales its sites, one warning says so.
"""

from __future__ import annotations

import contextlib
import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import is_identically_one, scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample

from .batch import as_batch, batch_size

#: the plate over examples: per-example terms (evaluation, IWAE weights) are taken along it
DATA_PLATE = "data"


def forked_rng():
    """A block whose random draws leave the global random state (CPU, and CUDA where in use) as it was."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=devices)


class Unscaled(Messenger):
    """Takes every scale off the sample sites of the programs run inside it (it must be entered before them, so
    that it sees each site after their own scale handlers and plates), and remembers which sites had one."""

    def __init__(self):
        super().__init__()
        self.scaled: dict[str, object] = {}

    def _process_message(self, msg):
        if msg["type"] == "sample" and not site_is_subsample(msg) and not is_identically_one(msg["scale"]):
            self.scaled.setdefault(msg["name"], msg["scale"])
            msg["scale"] = 1.0


def _scale_text(scale) -> str:
    if torch.is_tensor(scale) and scale.numel() > 1:
        return "per-example weights"
    return f"x {float(scale):.4g}"


#: the program classes whose scales were said: once in a process
_SAID_SCALED: set = set()


@contextlib.contextmanager
def seeded_eval(seed: int, device: torch.device | str = "cpu", module: torch.nn.Module | None = None):
    """Run a block reproducibly, in nats, without disturbing anyone else's randomness.

    Inside the block the random state is ``torch.manual_seed(seed)`` (CPU, and the CUDA device ``device``
    names), ``module`` is in eval mode, and the programs' sample sites carry no scale (:class:`Unscaled`);
    afterwards, even after an exception, the global random state and the module's training mode are what they
    were. Evaluation and figures use it, so that looking at a model mid-training does not change the training run.
    """
    device = torch.device(device)
    module = getattr(module, "module", module) if not isinstance(module, torch.nn.Module) else module
    was_training = module.training if module is not None else None
    unscaled = Unscaled()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), unscaled:
        torch.manual_seed(seed)
        if module is not None:
            module.eval()
        try:
            yield
        finally:
            if module is not None:
                module.train(was_training)
    if unscaled.scaled and type(module) not in _SAID_SCALED:
        _SAID_SCALED.add(type(module))
        who = type(module).__name__ if module is not None else "the program"
        sites = ", ".join(f"{n!r} ({_scale_text(v)})" for n, v in unscaled.scaled.items())
        warnings.warn(f"{who} scales its sites {sites} (poutine.scale or a subsampling plate); ppvae evaluates "
                      f"it without the scales, in nats per example: they weigh the training objective only",
                      stacklevel=3)


@contextlib.contextmanager
def sampled_enumeration():
    """Evaluation samples a site marked for enumeration (M2's label) on purpose: a valid proposal, no gradient
    needed; Pyro's warning that only TraceEnum_ELBO enumerates is then noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*If you want to enumerate sites, you need to use "
                                                  r"TraceEnum_ELBO")
        yield


def sample_sites(trace) -> dict:
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)}


def latent_sites(model_tr) -> list[str]:
    return [n for n, s in sample_sites(model_tr).items() if not s["is_observed"]]


def observed_sites(model_tr) -> list[str]:
    return [n for n, s in sample_sites(model_tr).items() if s["is_observed"]]


@contextlib.contextmanager
def untouched(model):
    """A block that may run the programs without changing the run: the random state (CPU and CUDA) and the
    module's buffers (batch-norm statistics, ...) are what they were afterwards."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        with forked_rng():
            yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])


def data_plate(size: int, name: str = DATA_PLATE):
    """``pyro.plate(name, size)``, or nothing where an enclosing program already opened that plate."""
    for frame in _PYRO_STACK:
        if isinstance(frame, PlateMessenger) and frame.name == name:
            if size not in (frame.size, frame.subsample_size):
                raise ValueError(f"the enclosing plate {name!r} has size {frame.size} (subsample "
                                 f"{frame.subsample_size}), but this program has {size} examples")
            return contextlib.nullcontext()
    return pyro.plate(name, size)


def data_frame(site: dict, plate: str | None = DATA_PLATE):
    return next((f for f in site["cond_indep_stack"] if f.name == plate and f.dim is not None), None)


def data_rows(value: torch.Tensor, site: dict, plate: str | None = DATA_PLATE) -> int | None:
    """How many examples a site's tensor holds along the data plate (the subsample, where there is one)."""
    frame = data_frame(site, plate)
    return value.shape[frame.dim] if frame is not None and value.dim() >= -frame.dim else None


def per_example(value: torch.Tensor, site: dict, rows: int, plate: str | None = DATA_PLATE) -> torch.Tensor:
    """A site's log-density (or KL) tensor as one number per example of the data plate (``plate``): shape
    (rows,). A site outside the data plate is shared equally by the rows, so the rows still sum to the whole
    term."""
    frame = data_frame(site, plate)
    if frame is None:
        return (value.sum() / rows).expand(rows)
    if value.dim() < -frame.dim:
        value = value.reshape((1,) * (-frame.dim - value.dim()) + tuple(value.shape))
    value = value.movedim(frame.dim, 0)
    return value.reshape(value.shape[0], -1).sum(1).expand(rows)


def weigh(value: torch.Tensor, site: dict, per_dim: bool) -> torch.Tensor:
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
            if not site["infer"].get("_deterministic"):  # pyro.deterministic records a value; it scores nothing
                terms.append(("observed", name, weigh(site["fn"].log_prob(site["value"]), site, False), site))
            continue
        if name not in guide_sites:
            raise ValueError(f"latent site {name!r} has no site in the guide, so its KL term is not defined here "
                             f"(an enumerated discrete latent is summed out by TraceEnum_ELBO's loss instead)")
        g = guide_sites[name]
        q, p, z = g["fn"], site["fn"], site["value"]
        if per_dim:
            q, p = factors(q, name), factors(p, name)
        kl = None
        if analytic:
            try:
                kl = weigh(kl_divergence(q, p), g, per_dim)
            except NotImplementedError:
                pass
        if kl is None:
            kl = weigh(q.log_prob(z), g, per_dim) - weigh(p.log_prob(z), site, per_dim)
        terms.append(("kl", name, kl, g))
    rows = None  # the examples along the data plate: the batch, or the program's subsample of it
    for kind, _, value, site in terms:
        rows = data_rows(value[..., 0] if per_dim and kind == "kl" else value, site, plate)
        if rows is not None:
            break
    rows = rows if rows is not None else batch_size(batch)
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
    rows = next(iter({**observed, **kls}.values())).shape[0] if observed or kls else batch_size(batch)
    zero = torch.zeros(rows, device=batch_device(batch))
    recon = sum(observed.values(), zero)
    kl = torch.cat(list(kls.values()), -1) if per_dim else sum(kls.values(), zero)
    return recon, kl


def factors(d, name: str):
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


def batch_device(batch) -> torch.device:
    batch = getattr(batch, "source", batch)  # a program's arguments: the batch they came from
    return next(iter(as_batch(batch).values())).device


class NotPerExample(ValueError):
    """A K-sample estimate per example is not defined for this program (a latent site outside the data plate)."""


def per_example_weight(site: dict, vectorized: bool, plate: str | None = DATA_PLATE) -> torch.Tensor:
    # (K, examples) when the particles are a plate, else (examples,); 1 where a site broadcasts.
    dims = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized}
    if plate is None:
        raise NotPerExample("no plate of the program has one entry per example, so an importance weight per example "
                            "is not defined; open pyro.plate(\"data\", N) over the examples, or name the plate "
                            "that does with model.data_plate")
    if plate not in dims:
        raise NotPerExample(f"site {site['name']!r} lies outside pyro.plate({plate!r}), so its log-density is "
                            f"shared by all examples and an importance weight per example is not defined; K-sample "
                            f"estimates (IWAE) need every site inside the data plate")
    keep = [dims["num_particles_vectorized"], dims[plate]] if vectorized else [dims[plate]]
    lp = site["log_prob"]
    lp = lp.reshape((1,) * max(0, -min(keep) - lp.dim()) + tuple(lp.shape))
    lp = lp.movedim(keep, list(range(len(keep))))
    return lp.reshape(*lp.shape[:len(keep)], -1).sum(-1)


def plate_nesting(guide, args, declared: int | None = None) -> int:
    """How many plates nest in a program: ``declared``, else the deepest plate of one run of ``guide(args)``."""
    if declared is not None:
        return int(declared)
    tr = pyro.poutine.trace(guide).get_trace(args)
    return max([-f.dim for s in tr.nodes.values() if s["type"] == "sample" for f in s["cond_indep_stack"]
                if f.vectorized] or [0])


__all__ = ["DATA_PLATE", "forked_rng", "seeded_eval", "sampled_enumeration", "sample_sites", "latent_sites",
           "observed_sites", "untouched", "data_plate", "data_frame", "data_rows", "per_example", "weigh", "site_terms",
           "elbo_terms", "factors", "batch_device", "NotPerExample", "per_example_weight", "plate_nesting"]
