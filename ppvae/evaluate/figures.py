"""The figures of a run, each drawn where the model has the capabilities it needs.

``write_figures`` draws what training writes (reconstructions, samples, interpolations, the training curve);
``write_report_figures`` adds what ``ppvae evaluate`` writes (traversals, k-hat histogram, latent scatter,
manifold, t-SNE). ``skipped_figures`` says which a model's missing capabilities rule out, and why.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from .. import plots
from ..batch import as_batch, batch_size, take
from ..components.priors import StandardNormal
from ..inference.contract import output_of
from ..inference.program import Program, conditional, program, require
from ..inference.writer import held_out_split
from ..traces import seeded_eval
from .latent import Conditioned, class_grid, interpolate

#: figures only ``ppvae evaluate`` writes (the training figures are rewritten on every evaluate anyway)
REPORT_FIGURES = ("traversals.png", "khat_histogram.png", "latent_scatter.png", "manifold.png", "latent_tsne.png",
                  "confusion_matrix.png")


def model_inputs(model, batch):
    """What a model's ``encode`` / ``reconstruct`` take: the batch for a conditional model (it reads the labels)
    or a program whose capabilities are derived from its traces, the tensor x otherwise (the contract's
    ``encode(x)``)."""
    batch = as_batch(batch)
    p = program(model)
    return batch if conditional(model) or not p.declares("encode") else batch["x"]


@contextlib.contextmanager
def _derived_figure(p: Program, figure: str):
    """A figure drawn with capabilities derived from the traces: where this program's traces cannot give it (a
    sequence model's code depends on the rows), it is skipped and the reason kept for the report."""
    try:
        yield
    except ValueError as e:
        if p.declares("encode") and p.declares("decode"):
            raise
        p.notes[figure] = str(e)


def drawable(images, like=None) -> bool:
    """Whether a tensor can be drawn as an image grid (and, with ``like``, beside those images)."""
    if not isinstance(images, torch.Tensor) or images.dim() not in (2, 3, 4):
        return False
    if images.dim() == 4 and images.shape[1] not in (1, 3):
        return False
    return like is None or images.shape[1:] == like.shape[1:]


@torch.no_grad()
def write_figures(model, test, metrics: list[dict], out: Path, seed: int = 0, n: int = 8,
                  classes: list[str] | None = None) -> list[str]:
    """The standard figures of a run, each where the model has what it needs: reconstructions
    (``reconstruct``), prior samples (``generate``), for a conditional model the class grid, interpolations
    (``encode`` and ``decode``; at least two test examples, of one class for a conditional model), the training
    curve. Returns the names of the files written; :func:`skipped_figures` says why the others were not."""
    written = []
    batch = as_batch(test)
    if output_of(model).text:
        return _write_string_figures(model, batch, metrics, out, seed, n)
    x = batch["x"][: 2 * n]
    p = program(model)
    p.sites(batch)
    cond = p.conditional
    with seeded_eval(seed, x.device, p.module):
        if p.can("reconstruct"):
            recon = p.reconstruct(model_inputs(p, take(batch, slice(0, n))))
            if drawable(recon, x):
                plots.plot_reconstructions(x[:n], recon, path=out / "reconstructions.png", n=n)
                written.append("reconstructions.png")
        if p.can("generate"):
            samples = p.generate(64, context=batch)
            if drawable(samples):
                plots.plot_samples(samples, nrow=8, path=out / "samples.png")
                written.append("samples.png")
            if cond:
                plots.plot_class_grid(class_grid(p, 8), classes, path=out / "class_grid.png")
                written.append("class_grid.png")
        if p.can("encode") and p.can("decode"):
            for method in ("linear", "spherical"):
                with _derived_figure(p, f"interpolation_{method}.png"):
                    strips = None
                    strips = interpolation_strips(p, batch if cond else take(batch, slice(0, 2 * n)), method=method)
                if strips is None:
                    break
                within = " of one class (the label held fixed)" if cond else ""
                plots.plot_interpolation(strips, path=out / f"interpolation_{method}.png",
                                         title=f"{method.capitalize()} interpolation between posterior means{within}")
                written.append(f"interpolation_{method}.png")
        written += _curve_figures(metrics, out)
    for stale in set(TRAIN_FIGURES) - set(written):  # from an earlier model in this directory
        (out / stale).unlink(missing_ok=True)
    return written


def _write_string_figures(model, batch, metrics, out: Path, seed: int, n: int) -> list[str]:
    """A model whose outputs are strings (sequence_vae): samples and reconstructions as text files, and the
    training curves."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with seeded_eval(seed, batch["x"].device, model):
        (out / "samples.txt").write_text("\n".join(model.generate(4 * n)) + "\n")
        written.append("samples.txt")
        if program(model).declares("reconstruct"):  # a language model has no code to reconstruct from
            inputs = model.strings(batch["x"][:n])
            pairs = [f"{a}\t{b}" for a, b in zip(inputs, model.reconstruct(batch["x"][:n]))]
            (out / "reconstructions.txt").write_text("input\treconstruction\n" + "\n".join(pairs) + "\n")
            written.append("reconstructions.txt")
    return written + _curve_figures(metrics, out)


def _curve_figures(metrics: list[dict], out: Path) -> list[str]:
    """The training curve, and the KL decomposition where the metrics have one; the names written."""
    if not metrics:
        return []
    plots.plot_training_curve(metrics, path=out / "training_curve.png")
    if metrics[-1].get(f"{held_out_split(metrics[-1])}_tc") is None:
        return ["training_curve.png"]
    plots.plot_kl_decomposition(metrics, path=out / "kl_decomposition.png")
    return ["training_curve.png", "kl_decomposition.png"]


@torch.no_grad()
def interpolation_strips(model, batch, pairs: int = 4, steps: int = 10, method: str = "linear"):
    """(pairs, steps, *event) decoded paths between posterior means, or None where the batch has no pair: between
    the first and last ``pairs`` examples, or for a conditional model between two examples of one class, with the
    label held fixed."""
    batch = as_batch(batch)
    if conditional(model):
        ends = _pairs_within_classes(batch, pairs)
        return torch.cat([interpolate(Conditioned(model, c), a, b, steps=steps, method=method)
                          for c, a, b in ends]) if ends else None
    k = min(pairs, batch_size(batch) // 2)
    n = batch_size(batch)
    return interpolate(model, take(batch, slice(0, k)), take(batch, slice(n - k, n)), steps=steps,
                       method=method) if k else None


def _pairs_within_classes(batch, pairs: int = 4) -> list:
    """[(class, a, b)]: the first two test examples (as batches) of each of the first ``pairs`` classes that
    have two."""
    y = batch.get("y")
    if y is None or y.ndim != 1:
        return []
    out = []
    for c in torch.unique(y).tolist():
        rows = (y == c).nonzero().squeeze(1)[:2]
        if len(rows) == 2 and len(out) < pairs:
            out.append((c, take(batch, rows[:1]), take(batch, rows[1:])))
    return out


#: figure -> the capabilities it needs
FIGURE_NEEDS = {"reconstructions.png": ("reconstruct",), "samples.png": ("generate",),
                "interpolation_linear.png": ("encode", "decode"), "interpolation_spherical.png": ("encode", "decode"),
                "traversals.png": ("encode", "decode"), "latent_scatter.png": ("encode",),
                "manifold.png": ("decode", "prior")}
TRAIN_FIGURES = ("reconstructions.png", "samples.png", "interpolation_linear.png", "interpolation_spherical.png",
                 "training_curve.png", "class_grid.png", "kl_decomposition.png")


def skipped_figures(model) -> dict[str, str]:
    """{figure: why it is not drawn} for the figures a model's capabilities (declared, or derived from its
    traces) rule out."""
    out = {}
    p = program(model)
    for figure, needs in FIGURE_NEEDS.items():
        missing = [c for c in needs if not (p.can(c) or (c == "prior" and (callable(getattr(p.module, "prior", None))
                                                                           or p.can("generate"))))]
        if missing:
            out[figure] = f"needs the model's {' and '.join(m + '()' for m in missing)}, which {p.name} does not " \
                          f"have and which its traces do not give"
    if output_of(model).text:  # text files instead of image grids (samples.txt, ...)
        for figure in ("reconstructions.png", "samples.png", "interpolation_linear.png", "interpolation_spherical.png",
                       "traversals.png", "manifold.png"):
            out.pop(figure, None)
    out.update(p.notes)
    if conditional(model) and "manifold.png" not in out:
        out["manifold.png"] = "the decoder needs a class; class_grid.png shows the samples of each class"
    return out


@torch.no_grad()
def write_report_figures(model, x, labels, arrays: dict, metrics: list[dict], out: Path, *,
                         seed: int = 0, tsne: bool = False, n: int = 8, classes: list[str] | None = None) -> list[str]:
    """All figures of a report into ``out`` that the model's capabilities allow; returns the file names written."""
    written = write_figures(model, x, metrics, out, seed=seed, n=n, classes=classes)
    batch = as_batch(x)
    x = batch["x"]
    p = program(model)
    cond = p.conditional
    can_encode, can_decode = p.can("encode"), p.can("decode")
    can_decode = can_decode and not output_of(p.module).text  # decoded strings are no image grid
    with seeded_eval(seed, x.device, p.module):
        codes = torch.cat([p.encode(model_inputs(p, take(batch, slice(s, s + 1000))))
                           for s in range(0, x.shape[0], 1000)]).cpu() if can_encode else None
    if can_decode and codes is not None:
        order, kls = _traversal_order(arrays, codes)
        seen_as = Conditioned(p, int(batch["y"][0])) if cond else p
        grid = None
        with _derived_figure(p, "traversals.png"):
            grid = latent_traversals(seen_as, take(batch, slice(0, 1)) if not cond else x[:1], order)
        if grid is not None and drawable(grid.flatten(0, 1)):
            plots.plot_traversals(grid, order, kls, path=out / "traversals.png")
            written.append("traversals.png")
    if arrays.get("confusion") is not None:
        accuracy = np.trace(arrays["confusion"]) / max(1, arrays["confusion"].sum())
        plots.plot_confusion_matrix(arrays["confusion"], classes, path=out / "confusion_matrix.png",
                                    title=f"q(y | x) on {int(arrays['confusion'].sum())} test examples: "
                                          f"accuracy {100 * accuracy:.1f}%")
        written.append("confusion_matrix.png")
    khat = arrays["khat"]
    if khat is not None and np.isfinite(khat).any():
        plots.plot_khat_histogram(khat, path=out / "khat_histogram.png")
        written.append("khat_histogram.png")
    code_dim = codes.shape[-1] if codes is not None else 0
    lab = labels.cpu() if labels is not None else None
    if lab is not None and lab.ndim == 2:  # factors: colour by the first one
        lab = lab[:, 0]
    if codes is None:
        pass
    elif code_dim == 1:  # the code against the label (or the example's index), so classes show as bands
        g = torch.Generator().manual_seed(seed)
        y = lab.float() + 0.3 * (torch.rand(len(codes), generator=g) - 0.5) if lab is not None \
            else torch.arange(len(codes), dtype=torch.float32)
        plots.plot_latent_scatter(torch.stack([codes[:, 0], y], 1), lab, "Posterior means (1-D latent)",
                                  path=out / "latent_scatter.png", xlabel="z0",
                                  ylabel="label (jittered)" if lab is not None else "example")
        written.append("latent_scatter.png")
    elif code_dim == 2:
        plots.plot_latent_scatter(codes, lab, "Posterior means (2-D latent)", path=out / "latent_scatter.png")
        written.append("latent_scatter.png")
        if can_decode and (callable(getattr(p.module, "prior", None)) or p.can("generate")) and not cond:
            grid = latent_manifold(p, 15, seed=seed)
            if drawable(grid):
                plots.plot_manifold(grid, 15, path=out / "manifold.png")
                written.append("manifold.png")
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


def _traversal_order(arrays: dict, codes: torch.Tensor) -> tuple[list[int], list[float] | None]:
    # Order the code's dimensions by KL where the KL per dimension is that of the code (one latent site),
    # else by how much the code varies with x.
    kl = arrays["kl_dims"]
    aligned = kl is not None and len(kl) == codes.shape[-1]
    score = kl if aligned else codes.var(0).tolist()
    order = sorted(range(codes.shape[-1]), key=lambda d: -score[d])[:10]
    return order, [kl[d] for d in order] if aligned else None


@torch.no_grad()
def latent_traversals(vae, x, dims: list[int], steps: int = 9, span: float = 3.0) -> torch.Tensor:
    """(len(dims), steps, *event): decode the code of the first example of ``x`` (a tensor or a batch) with each
    listed dimension swept over ±span."""
    first = take(as_batch(x), slice(0, 1)) if not torch.is_tensor(x) else x[:1]
    z = require(vae, "encode", "latent traversals")(first)[0]
    values = torch.linspace(-span, span, steps, device=z.device)
    decode = require(vae, "decode", "latent traversals")
    rows = []
    for d in dims:
        zs = z.repeat(steps, 1)
        zs[:, d] = values
        rows.append(decode(zs, context=first) if isinstance(vae, Program) and not vae.declares("decode") else
                    decode(zs))
    return torch.stack(rows)


@torch.no_grad()
def latent_manifold(vae, n: int = 15, *, seed: int = 0, num_draws: int = 20000) -> torch.Tensor:
    """Decodings over an n x n grid of the prior's marginal quantiles (5% to 95%) in a 2-D latent space
    (Kingma & Welling 2014, fig. 4). The quantiles are exact for the standard normal prior and read off
    ``num_draws`` seeded prior draws for any other (mixture, VampPrior, flow, ...)."""
    p = program(vae)
    device = p.device
    levels = torch.linspace(0.05, 0.95, n, device=device)
    prior = getattr(p.module, "prior", None)
    if isinstance(prior, StandardNormal):
        q = torch.distributions.Normal(0.0, 1.0).icdf(levels).unsqueeze(1).expand(n, 2)
    else:
        with seeded_eval(seed, device, p.module):
            z = prior(num_draws).sample() if callable(prior) else p.prior_codes(num_draws)
        q = torch.quantile(z, levels, dim=0)  # (n, 2): column d holds z_d's quantiles
    grid = torch.cartesian_prod(q[:, 1].flip(0), q[:, 0]).flip(-1)  # rows: z1 from high to low; columns: z0
    return p.decode(grid)
