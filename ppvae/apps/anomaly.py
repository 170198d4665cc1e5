r"""Anomaly and out-of-distribution scores for any trained model, and how well each separates two sets.

Every score is "higher = more anomalous", per example:

``reconstruction``  squared error between x and ``reconstruct(x)``, summed over dimensions;
``neg_elbo``        -ELBO(x) in nats (one joint draw, beta = 1);
``neg_iwae``        -log p(x), the importance-weighted estimate with K samples (Burda et al. 2016), in nats;
``complexity``      the complexity-corrected likelihood of Serrà et al. (2020), "Input complexity and
                    out-of-distribution detection with likelihood-based generative models" (ICLR):

.. math:: S(x) = -\log_2 p_\theta(x) - L(x),

where L(x) is the length in bits of x compressed by a real lossless compressor (PNG of the 8-bit image, or
zlib of its bytes with ``complexity_zlib``). S is a log likelihood ratio between the model and a universal
model of images; it corrects the failure of raw likelihoods that Nalisnick et al. (2019) showed: a model of
Fashion-MNIST gives simpler images, such as MNIST digits, a *higher* likelihood. -log2 p(x) comes from the
IWAE estimate (a density on grey levels, not a code length under a Bernoulli likelihood; the paper uses it
the same way as a score).

``detection_metrics`` gives AUROC, average precision and the false-positive rate at 95% true-positive rate
(scikit-learn's metrics, anomalous = positive).
"""

from __future__ import annotations

import io
import math
import warnings
import zlib

import numpy as np
import torch

from ..batch import as_batch, batches
from ..evaluate.elbo import iwae_log_likelihood
from ..inference.contract import check_batch_keys
from ..inference.program import program, require
from ..progress import Stages
from ..traces import elbo_terms, seeded_eval

SCORES = ("reconstruction", "neg_elbo", "neg_iwae", "complexity", "complexity_zlib")
DEFAULT_SCORES = ("reconstruction", "neg_elbo", "neg_iwae", "complexity")


def complexity_bits(x: torch.Tensor, compressor: str = "png") -> np.ndarray:
    """L(x): bits of each example quantized to 8 bits and compressed losslessly (``png`` for images with 1 or 3
    channels, ``zlib`` at level 9 for any array)."""
    if compressor not in ("png", "zlib"):
        raise ValueError(f"unknown compressor {compressor!r}; choose png or zlib")
    q = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if compressor == "zlib":
        return np.array([8 * len(zlib.compress(a.tobytes(), 9)) for a in q], dtype=float)
    if q.ndim != 4 or q.shape[1] not in (1, 3):
        raise ValueError(f"PNG compresses images (N, 1 or 3, H, W), but x has shape {tuple(q.shape)}; use "
                         f"complexity_zlib for other data")
    from PIL import Image

    out = []
    for a in q:
        buffer = io.BytesIO()
        Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(buffer, format="PNG", optimize=True)
        out.append(8 * buffer.tell())
    return np.array(out, dtype=float)


def check_scores(scores) -> tuple[str, ...]:
    scores = tuple(scores or DEFAULT_SCORES)
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise ValueError(f"unknown anomaly score(s) {', '.join(unknown)}; choose from: {', '.join(SCORES)}")
    return scores


@torch.no_grad()
def anomaly_scores(model, data, *, scores=None, num_samples: int = 100, seed: int = 0,
                   batch_size: int = 500, progress: bool = False) -> dict[str, np.ndarray]:
    """{score: (N,) array} for the examples of ``data`` (a tensor x or a batch mapping), higher = more anomalous;
    deterministic for a seed, and the global random state is left as it was. ``progress``: a bar over the scores
    (and one over the examples for the IWAE estimate)."""
    from ..evaluate.figures import model_inputs

    scores = check_scores(scores)
    batch = as_batch(data)
    try:
        check_batch_keys(model, list(batch))
    except ValueError as e:
        raise ValueError(f"{e}; anomaly scores are for models of x alone (vae, m2, your own), and a CVAE's p(x | y) "
                         f"needs the label of every anomaly") from None
    x = batch["x"]
    out: dict[str, np.ndarray] = {}
    iwae = any(s in scores for s in ("neg_iwae", "complexity", "complexity_zlib"))
    total = len(set(scores) - {"neg_iwae"}) + iwae  # the compressions are stages of their own
    with Stages("anomaly scores", total, progress) as stage:
        if "reconstruction" in scores:
            stage("reconstruction")
            reconstruct = require(model, "reconstruct", "the reconstruction score")
            with seeded_eval(seed, x.device, model):
                errors = [(reconstruct(model_inputs(model, part)) - part["x"]).flatten(1).square().sum(1)
                          for part in batches(batch, batch_size)]
            out["reconstruction"] = torch.cat(errors).cpu().numpy()
        if "neg_elbo" in scores:
            stage("ELBO")
            p = program(model)
            plate = p.sites(batch).plate
            with seeded_eval(seed, x.device, p.module):
                parts = []
                for part in batches(batch, batch_size):
                    args = p.prepare(part)
                    recon, kl = elbo_terms(p.model, p.guide, args, plate=plate)
                    parts.append(args.restore(kl - recon))
            out["neg_elbo"] = torch.cat(parts).cpu().numpy()
        if iwae:
            stage(f"IWAE, K={num_samples}")
            nll = -iwae_log_likelihood(model, batch, num_samples, seed=seed, progress=progress).cpu().numpy()
            if "neg_iwae" in scores:
                out["neg_iwae"] = nll
            for name, compressor in (("complexity", "png"), ("complexity_zlib", "zlib")):
                if name in scores:
                    stage(f"{compressor} compression")
                    out[name] = nll / math.log(2) - complexity_bits(x, compressor)
    return {s: out[s] for s in scores}


def detection_metrics(normal: np.ndarray, anomalous: np.ndarray) -> dict:
    """AUROC, average precision and FPR at 95% TPR of a score (higher = more anomalous), anomalous = positive."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    normal, anomalous = np.asarray(normal, dtype=float), np.asarray(anomalous, dtype=float)
    if len(normal) == 0 or len(anomalous) == 0:
        raise ValueError(f"detection needs normal and anomalous examples, got {len(normal)} and {len(anomalous)}")
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    s = np.r_[normal, anomalous]
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} score(s) are not finite")
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": float(roc_auc_score(y, s)), "average_precision": float(average_precision_score(y, s)),
            "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}


ANOMALY_FILE, SCORES_FILE = "anomaly.json", "anomaly_scores.csv"


def anomalous_data(name: str, event_shape: tuple, limit: int | None = None):
    """The anomalous examples named by ``--anomalous``: a registered dataset's test split, or every example
    of a .npy / .npz file; refused in one line when their shape is not the run's."""
    from ..data import load_dataset

    if name.endswith((".npy", ".npz")):
        data = load_dataset("file", path=name)
        x = torch.cat([data.train, data.test])
        what = name
    else:
        data = load_dataset(name, limit_test=limit)
        x, what = data.test, f"dataset {name!r}"
    if tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(f"the anomalous data ({what}) have event shape {tuple(x.shape[1:])}, but the run was trained "
                         f"on {tuple(event_shape)}; anomalies must have the shape of the normal data")
    return x[:limit]


def overlap(x: torch.Tensor, data) -> int:
    """How many rows of ``x`` are, exactly, rows of ``data`` (any of its splits)."""
    def rows(t):
        return {r.tobytes() for r in t.detach().cpu().flatten(1).numpy()}
    seen = set().union(*(rows(data.split(name)[0]) for name in data.splits))
    return sum(r.tobytes() in seen for r in x.detach().cpu().flatten(1).numpy())


def warn_overlap(x: torch.Tensor, data, name: str) -> int:
    """One line where anomalous data ``x`` are (partly) the run's own data, which no score can tell apart from
    normal; returns how many rows overlap."""
    shared = overlap(x, data)
    if shared == len(x):
        warnings.warn(f"the anomalous data ({name}) are the run's own data: all {shared} examples are in the data "
                      f"the run was trained and is scored on ({data.name}), so every score's AUROC is 0.5 by "
                      f"construction; name other data as anomalous (e.g. --anomalous fashion-mnist for a run of "
                      f"digits)", stacklevel=3)
    elif shared:
        warnings.warn(f"{shared} of the {len(x)} anomalous examples ({100 * shared / len(x):.1f}%, {name}) are also "
                      f"in the run's own data ({data.name}): they are scored as anomalies but are normal data, which "
                      f"pulls every AUROC toward 0.5", stacklevel=3)
    return shared


def evaluate_anomalies(run_dir, *, anomalous: str | None = None, normal_class: int | None = None, scores=None,
                       num_samples: int = 100, max_examples: int | None = None, seed: int = 0, device: str = "cpu",
                       figures: bool = True, progress: bool = True, checkpoint: str = "auto") -> dict:
    """Score a run's test split (normal) against anomalous data, or, with ``normal_class``, the run's test
    examples of that class against the others (one-class detection: the run was trained on that class, e.g.
    ``data.train_classes = [k]``); write ``anomaly.json``, ``anomaly_scores.csv`` and the figures. ``progress``:
    a bar over the two sets, and the scores' inside it (``--quiet``: none). ``checkpoint``: which weights, as
    :func:`~ppvae.load_run` reads them (``"auto"``: ``best.pt`` where the run kept one, else the latest); the
    report records the file and the epoch."""
    import csv
    import json
    from pathlib import Path

    from .. import plots
    from ..inference.checkpoint import atomic_write_bytes
    from ..inference.run import load_run

    scores = check_scores(scores)
    if (anomalous is None) == (normal_class is None):
        raise ValueError("give --anomalous DATASET|FILE (the run's test split is the normal data) or --normal-class K "
                         "(its test examples of class K against the others), not both or neither")
    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    model = run.model
    dev = next(model.parameters()).device
    test = run.data.batch("test")
    if normal_class is None:
        normal_x = test["x"][:max_examples]
        odd_x = anomalous_data(anomalous, normal_x.shape[1:], max_examples)
        what = {"normal": f"the test split of {run.spec['data']['name']}", "anomalous": anomalous}
        warn_overlap(odd_x, run.data, anomalous)
    else:
        y = test.get("y")
        if y is None or y.ndim != 1:
            raise ValueError(f"--normal-class needs class labels, but {run.spec['data']['name']!r} has none")
        if not bool((y == normal_class).any()):
            raise ValueError(f"--normal-class {normal_class}: no test example has that label (labels present: "
                             f"{', '.join(map(str, torch.unique(y).tolist()))})")
        normal_x, odd_x = test["x"][y == normal_class][:max_examples], test["x"][y != normal_class][:max_examples]
        what = {"normal": f"test examples of class {normal_class}", "anomalous": "test examples of the other classes"}
    with torch.no_grad(), Stages("anomaly", 2, progress) as stage:
        stage(f"normal: {len(normal_x)} examples")
        s_normal = anomaly_scores(model, normal_x.to(dev), scores=scores, num_samples=num_samples, seed=seed,
                                  progress=progress)
        stage(f"anomalous: {len(odd_x)} examples")
        s_odd = anomaly_scores(model, odd_x.to(dev), scores=scores, num_samples=num_samples, seed=seed,
                               progress=progress)
    metrics = {s: detection_metrics(s_normal[s], s_odd[s]) for s in scores}
    report = {"normal": {"data": what["normal"], "examples": len(normal_x)},
              "anomalous": {"data": what["anomalous"], "examples": len(odd_x)}, "num_samples": num_samples,
              "seed": seed, "checkpoint": run.read_from,
              "scores": {s: {k: v for k, v in m.items() if k != "roc"} for s, m in metrics.items()},
              "how": "higher score = more anomalous; anomalous = positive class; AUROC and average precision from "
                     "scikit-learn; FPR at the first threshold whose TPR reaches 95%"}
    atomic_write_bytes(run_dir / ANOMALY_FILE, json.dumps(report, indent=2).encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["set", "index", *scores])
    for name, values in (("normal", s_normal), ("anomalous", s_odd)):
        for i in range(len(values[scores[0]])):
            writer.writerow([name, i, *(f"{values[s][i]:.6g}" for s in scores)])
    atomic_write_bytes(run_dir / SCORES_FILE, buffer.getvalue().encode())
    if figures:
        plots.plot_roc_curves({s: (m["roc"]["fpr"], m["roc"]["tpr"], m["auroc"]) for s, m in metrics.items()},
                              path=run_dir / "figures" / "anomaly_roc.png")
        plots.plot_score_histograms(s_normal, s_odd, path=run_dir / "figures" / "anomaly_histograms.png")
    return report
