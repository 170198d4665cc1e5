"""The full evaluation of a run: honest numbers, diagnostics and figures, as ``ppvae evaluate`` writes them.

Every number in ``report.json`` comes with how it was computed (estimator, K, number of examples, seed),
and all log-likelihood figures are per example in nats.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pyro
import torch

from ..batch import as_batch, batches, take, to_device
from ..components.likelihoods import bits_per_dim
from ..data.sequences import per_token
from ..inference.checkpoint import atomic_write_bytes
from ..inference.contract import output_of
from ..inference.lock import writer_of
from ..inference.program import program
from ..inference.run import load_run
from ..progress import Stages
from ..registry import int_option
from . import diagnostics as diag
from .elbo import evaluate_elbo, iwae_log_likelihood, particles_vectorize
from .figures import latent_manifold, latent_traversals, skipped_figures, write_figures, write_report_figures  # noqa: F401  (ppvae.report's names)

REPORT_FILE = "report.json"
#: the stages of :func:`evaluate_model` its progress bar counts: ELBO, IWAE, PSIS, active units, KL per dimension,
#: mutual information, classification, posterior draws
EVALUATION_STAGES = 8
MI_EXAMPLES = 1000
POSTERIOR_EXAMPLES = 20


def evaluate_model(model, x, *, labels: torch.Tensor | None = None, num_samples: int = 1000,
                   seed: int = 0, posterior_draws: int = 500, progress: bool = True) -> tuple[dict, dict]:
    """(report, arrays): the numbers of the report, and the per-example arrays the figures need, for any
    ppvae model; ``x`` is a tensor or a batch mapping (with labels, masks, ... where the model reads them).
    ``progress``: a bar over the stages (and one over the examples inside the long ones, the IWAE estimate first)."""
    with Stages("evaluate", EVALUATION_STAGES, progress) as stage:
        return _evaluate_model(model, x, num_samples, seed, posterior_draws, stage)


def _evaluate_model(model, x, num_samples: int, seed: int, posterior_draws: int, stage: Stages) -> tuple[dict, dict]:
    start = time.perf_counter()
    num_samples = int_option(num_samples, 1, "num_samples (importance samples per example)")
    posterior_draws = int_option(posterior_draws, 1, "posterior_draws")
    batch = as_batch(x)
    n = batch["x"].shape[0]
    if n < 2:
        raise ValueError(f"evaluation needs at least 2 examples (active units and the mutual information are "
                         f"taken across examples), got {n}")
    p = program(model)
    stage("ELBO")
    elbo = evaluate_elbo(model, batch, seed=seed, progress=stage.progress)
    iwae, ll, khat = _iwae(p, batch, elbo, num_samples, seed, stage)
    stage("active units")
    units = diag.active_units(model, batch, seed=seed, by_site=True, progress=stage.progress)
    variance = torch.cat([v for _, v in units.values()]) if units else torch.zeros(0)
    active = sum(c for c, _ in units.values())
    latent_dim = int(variance.numel())
    stage("KL per dimension")
    kl_dims, kl_per_dimension = _kl_per_dimension(model, batch, seed, stage.progress)
    psis_khat = _khat_summary(khat, num_samples)
    stage("mutual information")
    report = {
        "num_examples": n,
        "seed": seed,
        "units": "nats per example",
        "model": p.name,
        "elbo": {**elbo, "how": "one joint draw of guide and model per example, beta = 1; analytic KL where "
                                "registered; recon_sites per observed site and kl_sites per latent site sum to the "
                                "reconstruction and KL terms"},
        "iwae_log_likelihood": {**iwae, "num_samples": num_samples},
        "kl_per_dimension": kl_per_dimension,
        "active_units": {"value": active, "of": latent_dim, "threshold": diag.ACTIVE_THRESHOLD,
                         "variance": variance.tolist(),
                         "sites": {k: {"value": c, "of": int(v.numel())} for k, (c, v) in units.items()},
                         "how": "units whose Cov_x(E_q[z_d | x]) exceeds the threshold (Burda et al. 2016), for each "
                                "continuous latent site; E_q from 1,000 draws, less their Monte Carlo noise, where the "
                                "guide has no closed-form mean that depends on x alone"},
        "mutual_information": _mutual_information(model, batch, seed),
        "psis_khat": psis_khat,
    }
    stage("classification")
    classification, confusion = _classification(model, batch)
    if classification is not None:
        report["classification"] = classification
    report["warnings"] = diag.collapse_warnings(latent_dim, active, elbo["kl"], kl_dims,
                                                sites={k: c for k, (c, _) in units.items()},
                                                kl_sites=kl_per_dimension["sites"]) if latent_dim else []
    report["warnings"] += _psis_warning(p, psis_khat.get("share_above_0.7"))
    stage("posterior draws")
    report["seconds"] = time.perf_counter() - start
    arrays = {"confusion": confusion, "khat": khat, "log_likelihood": ll, "variance": variance, "kl_dims": kl_dims,
              "latent_dim": latent_dim,
              "posterior": diag.posterior_inference_data(model, take(batch, slice(0, POSTERIOR_EXAMPLES)),
                                                         num_draws=posterior_draws, seed=seed)}
    return report, arrays


def _iwae(p, batch, elbo: dict, num_samples: int, seed: int,
          stage: Stages) -> tuple[dict, torch.Tensor, np.ndarray | None]:
    """The IWAE log-likelihood's report entry (in bits per dimension where that is a code length; per token for
    token data), the per-example estimates, and the PSIS k-hat of each example's weights (enough samples only)."""
    model, xs = p.module, batch["x"]
    n, dims = xs.shape[0], math.prod(xs.shape[1:])
    vectorized = particles_vectorize(model, batch)
    stage(f"IWAE, K={num_samples}")
    if num_samples >= diag.MIN_PSIS_SAMPLES:
        ll, log_w = iwae_log_likelihood(model, batch, num_samples, seed=seed, return_weights=True,
                                        progress=stage.progress)
        stage("PSIS k-hat")
        khat = diag.psis_khat(log_w)
        del log_w
    else:
        ll, khat = iwae_log_likelihood(model, batch, num_samples, seed=seed, progress=stage.progress), None
    iwae = {"value": float(ll.mean()), "std_error": float(ll.std() / math.sqrt(n)),
            "of": p.sites(batch).evidence,  # what the log-likelihood is of, by the program's site names
            "how": f"log-mean-exp of {num_samples} importance weights p(x,z)/q(z|x), z ~ q(z|x), per example "
                   f"(Burda et al. 2016); a lower bound in expectation; particles "
                   f"{'vectorized' if vectorized else 'drawn one at a time (the program does not broadcast)'}"}
    likelihood = getattr(model, "likelihood", None)
    if output_of(model).per_token:  # token data: per-word figures, as language models report them
        iwae["per_token"] = {**per_token(ll, xs), "how": "-(sum of the IWAE log-likelihoods) / (tokens predicted: "
                                                         "each sentence's tokens and its end token); perplexity = "
                                                         "exp(nll), an upper bound in expectation"}
    elif "bits_per_dim" in elbo:
        iwae["bits_per_dim"] = bits_per_dim(-iwae["value"], dims)
    elif likelihood is None or not callable(getattr(likelihood, "gives_code_length", None)):
        iwae["bits_per_dim_note"] = (f"not given: {p.name} has no ppvae likelihood to say whether "
                                     f"-log p is a code length (a mass function on data in its support)")
    elif getattr(likelihood, "discrete", False):
        name = getattr(likelihood, "registry_name", type(likelihood).__name__)
        iwae["bits_per_dim_note"] = (f"not given: the {name} likelihood is a mass function, but these data are "
                                     f"not all in its support (grey levels under a Bernoulli), so -log p(x) is "
                                     f"not a code length")
    return iwae, ll, khat


def _kl_per_dimension(model, batch, seed: int, progress: bool = False) -> tuple[list | None, dict]:
    """The KL of each latent dimension (all sites side by side) and its report entry (per site too)."""
    try:
        by_site = diag.kl_per_dimension(model, batch, seed=seed, by_site=True, progress=progress)
    except ValueError as e:
        return None, {"value": None, "sites": None, "how": str(e)}
    kl_dims = torch.cat(list(by_site.values())).tolist() if by_site else []
    return kl_dims, {"value": kl_dims, "sites": {k: v.tolist() for k, v in by_site.items()},
                     "how": "analytic KL(q(z_d|x) || p(z_d)) where registered, else Monte Carlo; mean over examples"}


def _mutual_information(model, batch, seed: int) -> dict:
    mi_x = take(batch, slice(0, MI_EXAMPLES))
    n_mi = mi_x["x"].shape[0]
    try:
        return {"value": diag.mutual_information(model, mi_x, seed=seed), "max": math.log(n_mi),
                "how": f"minibatch estimate over {n_mi} examples (He et al. 2019); at most log N"}
    except ValueError as e:
        return {"value": None, "how": str(e)}


def _psis_warning(p, share: float | None) -> list[str]:
    """A warning where most examples' importance weights have PSIS k-hat > 0.7, with the remedy for the guide."""
    if share is None or share <= 0.5:
        return []
    guide = getattr(p.module, "q", None)
    remedy = "more importance samples, a richer flow guide (guide.flows, guide.hidden) or a longer training" \
        if getattr(guide, "registry_name", "") == "iaf" else \
        "a flow guide (guide.name = \"iaf\") or more importance samples can help" \
        if getattr(guide, "registry_name", "") == "normal" else \
        "a richer guide, more importance samples or a longer training can help"
    return [f"{100 * share:.0f}% of examples have PSIS k-hat > 0.7: the guide is far from the posterior, so the IWAE "
            f"estimate may be loose; {remedy}."]


def _classification(model, batch) -> tuple[dict | None, np.ndarray | None]:
    """Test accuracy and confusion matrix of a model's classifier q(y | x) against class labels: its
    ``classify`` (or Pyro's ``classifier``), else the guide's discrete site q(y | x) the labels are given to."""
    y = batch.get("y")
    p = program(model)
    if y is None or y.ndim != 1 or not p.can("classify"):
        return None, None
    from sklearn.metrics import confusion_matrix

    probs = torch.cat([p.classify(part) for part in batches(batch, 1000)])
    predicted = probs.argmax(-1).cpu().numpy()
    truth = y.cpu().numpy()
    c = probs.shape[-1]
    matrix = confusion_matrix(truth, predicted, labels=list(range(c)))
    accuracy = float((predicted == truth).mean())
    out = {"accuracy": accuracy, "error": 1.0 - accuracy, "num_examples": int(len(truth)),
           "confusion_matrix": matrix.tolist(),
           "how": "argmax of q(y | x) against the test labels (none of which the model saw); rows of the confusion "
                  "matrix are true classes, columns predicted"}
    if callable(getattr(model, "classify_by_bound", None)):  # M2: the posterior its unlabelled bound teaches
        by_bound = torch.cat([model.classify_by_bound(part["x"]) for part in batches(batch, 500)])
        out["bound_accuracy"] = float((by_bound.argmax(-1).cpu().numpy() == truth).mean())
        out["bound_how"] = ("argmax over y of the bound L(x, y) (4 draws of z): the model's own p(y | x), which the "
                            "unlabelled rows pull q(y | x) towards; unlabelled data can only teach q(y | x) where "
                            "this is the better classifier")
    return out, matrix


def _khat_summary(khat: np.ndarray | None, num_samples: int) -> dict:
    how = (f"ArviZ psislw on each example's {num_samples} log importance weights (Yao et al. 2018); "
           f"k-hat > 0.7: importance sampling from the guide is unreliable")
    if khat is None:
        return {"share_above_0.7": None, "median": None, "max": None,
                "how": f"not computed: PSIS fits a Pareto tail to the largest min(K/5, 3 sqrt K) weights and needs "
                       f"K >= {diag.MIN_PSIS_SAMPLES} importance samples; got K = {num_samples}"}
    finite = khat[np.isfinite(khat)]
    out = {"share_above_0.7": float((finite > diag.KHAT_THRESHOLD).mean()) if finite.size else None,
           "median": float(np.median(finite)) if finite.size else None,
           "max": float(finite.max()) if finite.size else None, "how": how}
    if finite.size < khat.size:  # ArviZ's inf: fewer than 5 distinct weights in the tail, e.g. all weights equal
        out["undefined"] = int(khat.size - finite.size)
        out["how"] += (f"; {out['undefined']} example(s) have no k-hat (fewer than 5 distinct weights in the tail, "
                       f"as when every weight is equal) and are left out of the share, median and max")
    return out


def evaluate_run(run_dir: str | Path, *, num_samples: int = 1000, max_examples: int | None = None, seed: int = 0,
                 device: str = "cpu", figures: bool = True, tsne: bool = False, quality: bool = False,
                 checkpoint: str = "auto", progress: bool = True) -> dict:
    """Evaluate a run directory on its test split: write ``report.json``, ``posterior.nc`` (ArviZ) and the
    figures, and return the report. ``quality``: also the Frechet distance and sharpness of prior samples,
    reconstructions and ex-post mixture samples (:mod:`ppvae.evaluate.quality`; labelled image data).
    ``progress``: a bar over the stages, the figures' included, as ``ppvae evaluate`` draws it (``--quiet``: none).

    ``checkpoint`` (``"auto"``: the best where the run kept one, ``"best"`` or ``"last"``) says which weights;
    the report records the file and its epoch. A run still training is evaluated at the epoch its checkpoint
    holds, with a warning, and its outputs go to ``RUN/evaluate-epoch<N>/``, where training does not write.

    What ``ppvae evaluate RUN`` does. The model is rebuilt from the run directory (:func:`~ppvae.load_run`) and
    the test split from the data its spec names; log-likelihood numbers are per example, in nats, and the report
    says how each was computed.

    :param run_dir: a run directory written by :func:`~ppvae.train_spec`, :func:`~ppvae.train` with ``run_dir``
        or ``ppvae train``, on data loaded by name (a run on :func:`~ppvae.dataset_from_array` arrays is
        evaluated in Python instead: ``ppvae.report.evaluate_model(run.model, data.test)``).
    :param num_samples: the importance samples K per example of the IWAE estimate of log p(x), an integer >= 1
        (the PSIS k-hat diagnostic needs K >= 21). Larger K gives a tighter bound and takes longer.
    :param max_examples: evaluate only the first N test examples (at least 2 are needed); ``None``: all.
    :param seed: the seed of every Monte Carlo estimate and figure, so an evaluation repeats exactly.
    :param device: where to evaluate: ``"cpu"`` (the default), ``"auto"`` (CUDA where torch sees a GPU, else
        the CPU), ``"cuda"`` or ``"cuda:N"``.
    :param figures: write the figures (samples, reconstructions, interpolations, latent traversals, the latent
        scatter, the k-hat histogram, ..., as the model's capabilities allow) into ``figures/``.
    :param tsne: also draw a t-SNE map of the posterior means (``latent_tsne.png``, for codes of more than two
        dimensions, on up to 2,000 examples); slow.
    :param quality: also compute the sample-quality figures (``report["sample_quality"]``); needs labelled image
        data.
    :param checkpoint: ``"auto"``, ``"best"`` or ``"last"``, as above.
    :param progress: show the progress bar.
    :returns: the report, as written to ``report.json``: a dict with ``num_examples``, ``seed``, ``model``,
        ``elbo`` (``elbo``, ``recon``, ``kl``, per site ``recon_sites`` and ``kl_sites``),
        ``iwae_log_likelihood`` (``value``, ``std_error``, ``num_samples``; bits per dimension or per token where
        they apply), ``kl_per_dimension``, ``active_units``, ``mutual_information``, ``psis_khat``,
        ``classification`` (accuracy and confusion matrix, for a model with a classifier on class labels),
        ``warnings`` (posterior collapse, an unreliable guide), ``figures`` and ``figures_skipped`` (with
        ``figures``), ``sample_quality`` (with ``quality``), ``posterior_draws``,
        ``checkpoint`` (the file, its epoch, whether the run is still training), ``written_to`` (the directory
        the outputs went to) and ``seconds``; the entries' ``how`` says how each was computed.
    :raises FileNotFoundError: if ``run_dir`` is not a run directory (no ``spec.toml``) or has no checkpoint, or
        if the source file the model's class was loaded from no longer exists.
    :raises ValueError: if ``checkpoint`` is not one of the three names or is ``"best"`` for a run without a best
        checkpoint; if the run cannot be rebuilt exactly; if its data cannot be loaded again (in-memory arrays)
        or their vocabulary changed; if fewer than 2 test examples are evaluated; if ``num_samples`` is below 1;
        or if ``quality`` is asked of data it does not apply to.
    :raises RuntimeError: if ``device`` asks for CUDA and torch sees no GPU.

    Example::

        import ppvae

        report = ppvae.evaluate_run("runs/demo", num_samples=100, max_examples=200)
        print(report["elbo"]["elbo"], report["iwae_log_likelihood"]["value"])   # nats per example
        print(report["active_units"]["value"], "of", report["active_units"]["of"], "latent units in use")
        print(report["written_to"])        # where report.json, posterior.nc and figures/ went
    """
    if max_examples is not None:
        max_examples = int_option(max_examples, 2, "max_examples (the test examples evaluated)")
    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    out = _output_dir(run_dir, run)
    data = run.data
    device = next(run.model.parameters()).device
    batch = to_device(take(data.batch("test"), slice(0, max_examples)), device)
    labels = batch.get("y")
    # Pyro's validation as the run was trained (train.validate): a program that trained evaluates too.
    stages = Stages("evaluate", EVALUATION_STAGES + figures + quality, progress)
    with pyro.validation_enabled(run.spec["train"]["validate"]), stages as stage:
        report, arrays = _evaluate_model(run.model, batch, num_samples, seed, posterior_draws=500, stage=stage)
        if figures:
            stage("figures")
            report["figures"] = write_report_figures(run.model, batch, labels, arrays, run.metrics,
                                                     out / "figures", seed=seed, tsne=tsne,
                                                     classes=data.classes)
            report["figures_skipped"] = skipped_figures(run.model)
        if quality:
            stage("sample quality")
            from .quality import sample_quality
            report["sample_quality"] = sample_quality(run.model, data, n=min(1000, batch["x"].shape[0]), seed=seed)
    x = batch["x"]
    # The posterior draws go to netCDF (written to a temporary name, then renamed: never half-written).
    tmp = out / ".posterior.nc.tmp"
    arrays["posterior"].to_netcdf(str(tmp))
    tmp.replace(out / "posterior.nc")
    report["posterior_draws"] = {"file": "posterior.nc", "examples": min(x.shape[0], POSTERIOR_EXAMPLES),
                                 "how": "z ~ q(z|x) per example as ArviZ InferenceData (az.from_netcdf), one variable "
                                        "per latent site"}
    report["checkpoint"] = {**run.read_from, "trained_epochs": run.spec["train"]["epochs"],
                            "still_training": out != run_dir}
    report["written_to"] = str(out)
    atomic_write_bytes(out / REPORT_FILE, json.dumps(report, indent=2).encode())
    return report


def _output_dir(run_dir: Path, run) -> Path:
    """Where an evaluation writes: the run directory, or, while a process still trains the run (and would
    overwrite the figures), ``RUN/evaluate-epoch<N>/``, said in a warning."""
    writer = writer_of(run_dir)
    if writer is None:
        return run_dir
    out = run_dir / f"evaluate-epoch{run.epoch}"
    out.mkdir(exist_ok=True)
    warnings.warn(f"{str(run_dir)!r} is still training ({writer}): evaluating its checkpoint of epoch {run.epoch} of "
                  f"{run.spec['train']['epochs']}; the report and figures go to {out}, where training does not write",
                  stacklevel=3)
    return out


def summary(report: dict) -> str:
    """The human-readable summary printed by ``ppvae evaluate``."""
    e, iw = report["elbo"], report["iwae_log_likelihood"]
    lines = [
        f"evaluated {report['num_examples']} test examples (seed {report['seed']}), nats per example",
        f"  ELBO                {e['elbo']:10.2f}   (reconstruction {e['recon']:.2f}, KL {e['kl']:.2f})",
        f"  {iw.get('of', 'log p(x)')}, IWAE K={iw['num_samples']:<5} {iw['value']:7.2f}   (standard error "
        f"{iw['std_error']:.2f})",
    ]
    if len(e.get("kl_sites", {})) > 1 or len(e.get("recon_sites", {})) > 1:
        lines.append("  per site            log-likelihood "
                     + ", ".join(f"{k} {v:.2f}" for k, v in e["recon_sites"].items())
                     + "; KL " + ", ".join(f"{k} {v:.2f}" for k, v in e["kl_sites"].items()))
    if "per_token" in iw:
        t = iw["per_token"]
        lines.append(f"  per token           {t['nll']:10.3f}   nats (perplexity {t['perplexity']:.1f}, {t['tokens']} "
                     f"tokens with the end tokens)")
    if "bits_per_dim" in iw:
        lines.append(f"  bits per dimension  {iw['bits_per_dim']:10.4f}")
    elif "bits_per_dim_note" in iw:
        lines.append(f"  bits per dimension  {'-':>10}   ({iw['bits_per_dim_note']})")
    au = report["active_units"]
    if len(au.get("sites") or {}) > 1:  # each latent site's units, not pooled over the sites
        lines.append("  active units        " + "; ".join(f"{k}: {v['value']} of {v['of']}"
                                                         for k, v in au["sites"].items())
                     + f" ({au['value']} of {au['of']} in all)")
    else:
        lines.append(f"  active units        {au['value']:>7} of {au['of']}")
    kl = report["kl_per_dimension"]
    if len(kl.get("sites") or {}) > 1:  # a line per site, each dimension numbered within its site
        for i, (k, v) in enumerate(kl["sites"].items()):
            lines.append(f"  {'KL per dimension' if i == 0 else '':<20}{k}: " + " ".join(f"{d:.2f}" for d in v))
    elif kl["value"] is not None:
        lines.append("  KL per dimension    " + " ".join(f"{k:.2f}" for k in kl["value"]))
    else:
        lines.append(f"  KL per dimension    {'-':>10}   (not computed: {kl['how']})")
    mi = report["mutual_information"]
    if mi["value"] is not None:
        lines.append(f"  I(x; z) under q     {mi['value']:10.2f}   (at most log N = {mi['max']:.2f})")
    else:
        lines.append(f"  I(x; z) under q     {'-':>10}   (not computed: {mi['how']})")
    if "sample_quality" in report:
        q = report["sample_quality"]
        lines.append(f"  sample quality      Frechet distance in a classifier's features (its test accuracy "
                     f"{100 * q['classifier_test_accuracy']:.1f}%), sharpness (real {q['sharpness_real']:.4f}):")
        for name, v in q.items():
            if isinstance(v, dict) and "frechet_distance" in v:
                lines.append(f"    {name:<30} FD {v['frechet_distance']:9.2f}   sharpness {v['sharpness']:.4f} "
                             f"({v['sharpness_to_real']:.2f} of real)")
    if "classification" in report:
        c = report["classification"]
        lines.append(f"  q(y|x) accuracy     {100 * c['accuracy']:9.2f}%  (test error {100 * c['error']:.2f}%, "
                     f"{c['num_examples']} examples; confusion_matrix.png)")
        if "bound_accuracy" in c:
            lines.append(f"  p(y|x) by the bound {100 * c['bound_accuracy']:8.2f}%  (argmax_y L(x, y): what the "
                         f"unlabelled rows teach q(y|x))")
    k = report["psis_khat"]
    if k["share_above_0.7"] is None and k.get("undefined"):
        lines.append(f"  PSIS k-hat          {'-':>10}   (undefined for all {k['undefined']} examples)")
    elif k["share_above_0.7"] is None:
        lines.append(f"  PSIS k-hat          {'-':>10}   (not computed: needs K >= "
                     f"{diag.MIN_PSIS_SAMPLES} importance samples)")
    else:
        undefined = f"; {k['undefined']} undefined" if k.get("undefined") else ""
        lines.append(f"  PSIS k-hat > 0.7    {100 * k['share_above_0.7']:9.1f}%  (median {k['median']:.2f}{undefined})")
    for figure, why in report.get("figures_skipped", {}).items():
        lines.append(f"  skipped {figure}: {why}")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
