"""The full evaluation of a run: honest numbers, diagnostics and figures, as ``ppvae evaluate`` writes them.

Every number in ``report.json`` comes with how it was computed (estimator, K, number of examples, seed),
and all log-likelihood figures are per example in nats.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import diagnostics as diag
from . import plots
from .checkpoint import atomic_write_bytes
from .evaluate import evaluate_elbo, iwae_log_likelihood, seeded_eval
from .likelihoods import bits_per_dim
from .priors import StandardNormal

REPORT_FILE = "report.json"
MI_EXAMPLES = 1000
POSTERIOR_EXAMPLES = 20
#: figures only ``ppvae evaluate`` writes (the training figures are rewritten on every evaluate anyway)
REPORT_FIGURES = ("traversals.png", "khat_histogram.png", "latent_scatter.png", "manifold.png", "latent_tsne.png")


def evaluate_model(vae, x: torch.Tensor, *, labels: torch.Tensor | None = None, num_samples: int = 1000,
                   seed: int = 0, posterior_draws: int = 500) -> tuple[dict, dict]:
    """(report, arrays): the numbers of the report, and the per-example arrays the figures need."""
    start = time.perf_counter()
    n, dims = x.shape[0], math.prod(vae.event_shape)
    if n < 2:
        raise ValueError(f"evaluation needs at least 2 examples (active units and the mutual information are "
                         f"taken across examples), got {n}")
    elbo = evaluate_elbo(vae, x, seed=seed)
    psis = num_samples >= diag.MIN_PSIS_SAMPLES
    if psis:
        ll, log_w = iwae_log_likelihood(vae, x, num_samples, seed=seed, return_weights=True)
        khat = diag.psis_khat(log_w)
        del log_w
    else:
        ll, khat = iwae_log_likelihood(vae, x, num_samples, seed=seed), None
    iwae = {"value": float(ll.mean()), "std_error": float(ll.std() / math.sqrt(n)),
            "how": f"log-mean-exp of {num_samples} importance weights p(x,z)/q(z|x), z ~ q(z|x), per example "
                   f"(Burda et al. 2016); a lower bound in expectation"}
    if vae.likelihood.gives_code_length(x):
        iwae["bits_per_dim"] = bits_per_dim(-iwae["value"], dims)
    elif vae.likelihood.discrete:
        name = getattr(vae.likelihood, "registry_name", type(vae.likelihood).__name__)
        iwae["bits_per_dim_note"] = (f"not given: the {name} likelihood is a mass function, but these data are "
                                     f"not all in its support (grey levels under a Bernoulli), so -log p(x) is "
                                     f"not a code length")
    active, variance = diag.active_units(vae, x, seed=seed)
    kl_dims, kl_note = None, "analytic KL(q(z_d|x) || p(z_d)) where registered, else Monte Carlo; mean over examples"
    try:
        kl_dims = diag.kl_per_dimension(vae, x, seed=seed).tolist()
    except ValueError as e:
        kl_note = str(e)
    mi_x = x[:MI_EXAMPLES]
    try:
        mi = {"value": diag.mutual_information(vae, mi_x, seed=seed), "max": math.log(mi_x.shape[0]),
              "how": f"minibatch estimate over {mi_x.shape[0]} examples (He et al. 2019); at most log N"}
    except ValueError as e:
        mi = {"value": None, "how": str(e)}
    psis_khat = _khat_summary(khat, num_samples)
    share = psis_khat.get("share_above_0.7")
    report = {
        "num_examples": n,
        "seed": seed,
        "units": "nats per example",
        "elbo": {**elbo, "how": "one joint draw of guide and model per example, beta = 1; analytic KL where "
                                "registered"},
        "iwae_log_likelihood": {**iwae, "num_samples": num_samples},
        "kl_per_dimension": {"value": kl_dims, "how": kl_note},
        "active_units": {"value": active, "of": vae.latent_dim, "threshold": diag.ACTIVE_THRESHOLD,
                         "variance": variance.tolist(),
                         "how": "units whose Cov_x(E_q[z_d | x]) exceeds the threshold (Burda et al. 2016); E_q from "
                                "1,000 draws, less their Monte Carlo noise, where the guide has no closed-form mean"},
        "mutual_information": mi,
        "psis_khat": psis_khat,
    }
    report["warnings"] = diag.collapse_warnings(vae.latent_dim, active, elbo["kl"], kl_dims)
    if share is not None and share > 0.5:
        remedy = "more importance samples, a richer flow guide (guide.flows, guide.hidden) or a longer training" \
            if getattr(vae.q, "registry_name", "") == "iaf" else \
            "a flow guide (guide.name = \"iaf\") or more importance samples can help"
        report["warnings"].append(f"{100 * share:.0f}% of examples have PSIS k-hat > 0.7: the guide is far from the "
                                  f"posterior, so the IWAE estimate may be loose; {remedy}.")
    report["seconds"] = time.perf_counter() - start
    arrays = {"khat": khat, "log_likelihood": ll, "variance": variance, "kl_dims": kl_dims,
              "posterior": diag.posterior_inference_data(vae, x[:POSTERIOR_EXAMPLES], num_draws=posterior_draws,
                                                         seed=seed)}
    return report, arrays


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


@torch.no_grad()
def write_report_figures(vae, x: torch.Tensor, labels, arrays: dict, metrics: list[dict], out: Path, *,
                         seed: int = 0, tsne: bool = False, n: int = 8) -> list[str]:
    """All figures of a report into ``out``; returns the file names written."""
    from .train import write_figures

    written = write_figures(vae, x, metrics, out, seed=seed, n=n)
    order, kls = _traversal_order(arrays, vae.latent_dim)
    plots.plot_traversals(latent_traversals(vae, x[:1], order), order, kls, path=out / "traversals.png")
    written.append("traversals.png")
    khat = arrays["khat"]
    if khat is not None and np.isfinite(khat).any():
        plots.plot_khat_histogram(khat, path=out / "khat_histogram.png")
        written.append("khat_histogram.png")
    codes = torch.cat([vae.encode(x[s:s + 1000]) for s in range(0, x.shape[0], 1000)]).cpu()
    lab = labels.cpu() if labels is not None else None
    if vae.latent_dim == 1:  # the code against the label (or the example's index), so classes show as bands
        g = torch.Generator().manual_seed(seed)
        y = lab.float() + 0.3 * (torch.rand(len(codes), generator=g) - 0.5) if lab is not None \
            else torch.arange(len(codes), dtype=torch.float32)
        plots.plot_latent_scatter(torch.stack([codes[:, 0], y], 1), lab, "Posterior means (1-D latent)",
                                  path=out / "latent_scatter.png", xlabel="z0",
                                  ylabel="label (jittered)" if lab is not None else "example")
        written.append("latent_scatter.png")
    elif vae.latent_dim == 2:
        plots.plot_latent_scatter(codes, lab, "Posterior means (2-D latent)", path=out / "latent_scatter.png")
        plots.plot_manifold(latent_manifold(vae, 15, seed=seed), 15, path=out / "manifold.png")
        written += ["latent_scatter.png", "manifold.png"]
    else:
        from sklearn.decomposition import PCA

        pca = PCA(2).fit(codes.numpy())
        ratio = pca.explained_variance_ratio_
        plots.plot_latent_scatter(pca.transform(codes.numpy()), lab,
                                  f"Posterior means, PCA ({100 * ratio.sum():.0f}% of variance)",
                                  path=out / "latent_scatter.png", xlabel="PC 1", ylabel="PC 2")
        written.append("latent_scatter.png")
        if tsne:
            from sklearn.manifold import TSNE

            sub = codes[:2000].numpy()
            emb = TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(sub) - 1)).fit_transform(sub)
            plots.plot_latent_scatter(emb, lab[:2000] if lab is not None else None, "Posterior means, t-SNE",
                                      path=out / "latent_tsne.png", xlabel="t-SNE 1", ylabel="t-SNE 2")
            written.append("latent_tsne.png")
    for stale in set(REPORT_FIGURES) - set(written):  # from an earlier evaluate with other settings
        (out / stale).unlink(missing_ok=True)
    return written


def _traversal_order(arrays: dict, latent_dim: int) -> tuple[list[int], list[float] | None]:
    # Order by KL per dimension where it is defined, else by how much the code varies with x.
    score = arrays["kl_dims"] if arrays["kl_dims"] is not None else arrays["variance"].tolist()
    order = sorted(range(latent_dim), key=lambda d: -score[d])[:10]
    return order, [arrays["kl_dims"][d] for d in order] if arrays["kl_dims"] is not None else None


@torch.no_grad()
def latent_traversals(vae, x: torch.Tensor, dims: list[int], steps: int = 9, span: float = 3.0) -> torch.Tensor:
    """(len(dims), steps, *event): decode the code of ``x[0]`` with each listed dimension swept over ±span."""
    z = vae.encode(x[:1])[0]
    values = torch.linspace(-span, span, steps, device=z.device)
    rows = []
    for d in dims:
        zs = z.repeat(steps, 1)
        zs[:, d] = values
        rows.append(vae.decode(zs))
    return torch.stack(rows)


@torch.no_grad()
def latent_manifold(vae, n: int = 15, *, seed: int = 0, num_draws: int = 20000) -> torch.Tensor:
    """Decodings over an n x n grid of the prior's marginal quantiles (5% to 95%) in a 2-D latent space
    (Kingma & Welling 2014, fig. 4). The quantiles are exact for the standard normal prior and read off
    ``num_draws`` seeded prior draws for any other (mixture, VampPrior, flow, ...)."""
    device = next(vae.parameters()).device
    levels = torch.linspace(0.05, 0.95, n, device=device)
    if isinstance(vae.prior, StandardNormal):
        q = torch.distributions.Normal(0.0, 1.0).icdf(levels).unsqueeze(1).expand(n, 2)
    else:
        with seeded_eval(seed, device, vae):
            z = vae.prior(num_draws).sample()
        q = torch.quantile(z, levels, dim=0)  # (n, 2): column d holds z_d's quantiles
    grid = torch.cartesian_prod(q[:, 1].flip(0), q[:, 0]).flip(-1)  # rows: z1 from high to low; columns: z0
    return vae.decode(grid)


def evaluate_run(run_dir: str | Path, *, num_samples: int = 1000, max_examples: int | None = None, seed: int = 0,
                 device: str = "cpu", figures: bool = True, tsne: bool = False) -> dict:
    """Evaluate a run directory on its test split: write ``report.json``, ``posterior.nc`` (ArviZ) and the
    figures, and return the report."""
    from .run import load_run

    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device)
    data = run.data
    x = data.test[:max_examples].to(next(run.vae.parameters()).device)
    labels = data.test_labels[:max_examples] if data.test_labels is not None else None
    report, arrays = evaluate_model(run.vae, x, labels=labels, num_samples=num_samples, seed=seed)
    if figures:
        report["figures"] = write_report_figures(run.vae, x, labels, arrays, run.metrics, run_dir / "figures",
                                                 seed=seed, tsne=tsne)
    # The posterior draws go to netCDF (written to a temporary name, then renamed: never half-written).
    tmp = run_dir / ".posterior.nc.tmp"
    arrays["posterior"].to_netcdf(str(tmp))
    tmp.replace(run_dir / "posterior.nc")
    report["posterior_draws"] = {"file": "posterior.nc", "examples": min(x.shape[0], POSTERIOR_EXAMPLES),
                                 "how": "z ~ q(z|x) per example as ArviZ InferenceData (az.from_netcdf)"}
    atomic_write_bytes(run_dir / REPORT_FILE, json.dumps(report, indent=2).encode())
    return report


def summary(report: dict) -> str:
    """The human-readable summary printed by ``ppvae evaluate``."""
    e, iw = report["elbo"], report["iwae_log_likelihood"]
    lines = [
        f"evaluated {report['num_examples']} test examples (seed {report['seed']}), nats per example",
        f"  ELBO                {e['elbo']:10.2f}   (reconstruction {e['recon']:.2f}, KL {e['kl']:.2f})",
        f"  log p(x), IWAE K={iw['num_samples']:<5} {iw['value']:7.2f}   (standard error "
        f"{iw['std_error']:.2f})",
    ]
    if "bits_per_dim" in iw:
        lines.append(f"  bits per dimension  {iw['bits_per_dim']:10.4f}")
    elif "bits_per_dim_note" in iw:
        lines.append(f"  bits per dimension  {'-':>10}   ({iw['bits_per_dim_note']})")
    au = report["active_units"]
    lines.append(f"  active units        {au['value']:>7} of {au['of']}")
    kl = report["kl_per_dimension"]["value"]
    if kl is not None:
        lines.append("  KL per dimension    " + " ".join(f"{k:.2f}" for k in kl))
    mi = report["mutual_information"]
    if mi["value"] is not None:
        lines.append(f"  I(x; z) under q     {mi['value']:10.2f}   (at most log N = {mi['max']:.2f})")
    k = report["psis_khat"]
    if k["share_above_0.7"] is None and k.get("undefined"):
        lines.append(f"  PSIS k-hat          {'-':>10}   (undefined for all {k['undefined']} examples)")
    elif k["share_above_0.7"] is None:
        lines.append(f"  PSIS k-hat          {'-':>10}   (not computed: needs K >= {diag.MIN_PSIS_SAMPLES} importance samples)")
    else:
        undefined = f"; {k['undefined']} undefined" if k.get("undefined") else ""
        lines.append(f"  PSIS k-hat > 0.7    {100 * k['share_above_0.7']:9.1f}%  (median {k['median']:.2f}{undefined})")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
