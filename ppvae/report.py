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
from .evaluate import evaluate_elbo, iwae_log_likelihood
from .likelihoods import bits_per_dim

REPORT_FILE = "report.json"
MI_EXAMPLES = 1000
POSTERIOR_EXAMPLES = 20


def evaluate_model(vae, x: torch.Tensor, *, labels: torch.Tensor | None = None, num_samples: int = 1000,
                   seed: int = 0, posterior_draws: int = 500) -> tuple[dict, dict]:
    """(report, arrays): the numbers of the report, and the per-example arrays the figures need."""
    start = time.perf_counter()
    n, dims = x.shape[0], math.prod(vae.event_shape)
    elbo = evaluate_elbo(vae, x, seed=seed)
    ll, log_w = iwae_log_likelihood(vae, x, num_samples, seed=seed, return_weights=True)
    khat = diag.psis_khat(log_w)
    iwae = {"value": float(ll.mean()), "std_error": float(ll.std() / math.sqrt(n)) if n > 1 else None,
            "how": f"log-mean-exp of {num_samples} importance weights p(x,z)/q(z|x), z ~ q(z|x), per example "
                   f"(Burda et al. 2016); a lower bound in expectation"}
    if vae.likelihood.gives_code_length(x):
        iwae["bits_per_dim"] = bits_per_dim(-iwae["value"], dims)
    elif vae.likelihood.discrete:
        name = getattr(vae.likelihood, "registry_name", type(vae.likelihood).__name__)
        iwae["bits_per_dim_note"] = (f"not given: the {name} likelihood is a mass function, but these data are "
                                     f"not all in its support (grey levels under a Bernoulli), so -log p(x) is "
                                     f"not a code length")
    active, variance = diag.active_units(vae, x)
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
    share = float((khat > diag.KHAT_THRESHOLD).mean())
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
                         "how": "units whose Cov_x(E_q[z_d | x]) exceeds the threshold (Burda et al. 2016)"},
        "mutual_information": mi,
        "psis_khat": {"share_above_0.7": share, "median": float(np.median(khat)), "max": float(np.max(khat)),
                      "how": f"ArviZ psislw on each example's {num_samples} log importance weights "
                             f"(Yao et al. 2018); k-hat > 0.7: importance sampling from the guide is unreliable"},
    }
    report["warnings"] = diag.collapse_warnings(vae.latent_dim, active, elbo["kl"], kl_dims)
    if share > 0.5:
        report["warnings"].append(f"{100 * share:.0f}% of examples have PSIS k-hat > 0.7: the guide is far from the "
                                  f"posterior, so the IWAE estimate may be loose; a flow guide (guide.name = "
                                  f"\"iaf\") or more samples can help.")
    report["seconds"] = time.perf_counter() - start
    arrays = {"khat": khat, "log_likelihood": ll, "variance": variance, "kl_dims": kl_dims,
              "posterior": diag.posterior_inference_data(vae, x[:POSTERIOR_EXAMPLES], num_draws=posterior_draws,
                                                         seed=seed)}
    return report, arrays


@torch.no_grad()
def write_report_figures(vae, x: torch.Tensor, labels, arrays: dict, metrics: list[dict], out: Path, *,
                         seed: int = 0, tsne: bool = False, n: int = 8) -> list[str]:
    """All figures of a report into ``out``; returns the file names written."""
    from .train import write_figures

    write_figures(vae, x, metrics, out, seed=seed, n=n)
    written = ["reconstructions.png", "samples.png", "interpolation_linear.png", "interpolation_spherical.png"]
    if metrics:
        written.append("training_curve.png")
    order, kls = _traversal_order(arrays, vae.latent_dim)
    plots.plot_traversals(latent_traversals(vae, x[:1], order), order, kls, path=out / "traversals.png")
    plots.plot_khat_histogram(arrays["khat"], path=out / "khat_histogram.png")
    written += ["traversals.png", "khat_histogram.png"]
    codes = torch.cat([vae.encode(x[s:s + 1000]) for s in range(0, x.shape[0], 1000)]).cpu()
    lab = labels.cpu() if labels is not None else None
    if vae.latent_dim == 2:
        plots.plot_latent_scatter(codes, lab, "Posterior means (2-D latent)", path=out / "latent_scatter.png")
        plots.plot_manifold(latent_manifold(vae, 15), 15, path=out / "manifold.png")
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
def latent_manifold(vae, n: int = 15) -> torch.Tensor:
    """Decodings over an n x n grid of N(0,1) quantiles in a 2-D latent space (Kingma & Welling 2014, fig. 4)."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    device = next(vae.parameters()).device
    grid = torch.cartesian_prod(q.flip(0), q).flip(-1).to(device)  # rows: z1 from high to low; columns: z0
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
        f"{iw['std_error'] if iw['std_error'] is None else round(iw['std_error'], 2)})",
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
    lines.append(f"  PSIS k-hat > 0.7    {100 * k['share_above_0.7']:9.1f}%  (median {k['median']:.2f})")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
