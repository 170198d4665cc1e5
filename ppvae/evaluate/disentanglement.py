r"""Disentanglement metrics: how well a code z = encode(x) lines up with ground-truth factors of variation.

Each metric follows the definition in disentanglement_lib (Locatello et al. 2019, "Challenging Common Assumptions
in the Unsupervised Learning of Disentangled Representations"), whose sample sizes are the defaults here:

* :func:`beta_vae_score` (Higgins et al. 2017): a linear classifier predicts which factor was held fixed from
  mean |z(x1) - z(x2)| over pairs that share that factor; the score is its held-out accuracy.
* :func:`factor_vae_score` (Kim & Mnih 2018): with one factor held fixed over a batch, the code dimension of least
  variance (each scaled by its variance over the data) votes for that factor; a majority-vote classifier from
  code dimension to factor is scored on held-out votes. Dimensions whose standard deviation over the data is
  below ``threshold`` (collapsed to the prior) are pruned.
* :func:`mig` (Chen et al. 2018): per factor, the gap between the two largest mutual informations of a code
  dimension (discretized into 20 equal-width bins) with it, divided by the factor's entropy; averaged.
* :func:`dci` (Eastwood & Williams 2018): gradient-boosted trees predict each factor from the code; the feature
  importances R (codes x factors) give disentanglement sum_i rho_i (1 - H_K(P_i.)), P_ij = R_ij / sum_k R_ik,
  rho_i the share of code i's importance, completeness the same over factors, informativeness the accuracy.
* :func:`sap` (Kumar et al. 2018): per factor, the gap between the two best single code dimensions at predicting
  it (a linear SVM's held-out accuracy for discrete factors); averaged.

A :class:`FactorSource` gives factors and their observations: :class:`RenderedFactors` draws any factor
combination through a renderer (procedural dSprites: no data set held in memory), :class:`TableFactors` samples
rows of a labelled data set. :func:`evaluate_disentanglement` runs all five on a trained model;
``ppvae disentanglement RUN`` writes them to ``disentanglement.json`` with the sample sizes and seed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..progress import Stages, bar

#: the metrics :func:`evaluate_disentanglement` computes, in order
METRICS = ("beta_vae", "factor_vae", "mig", "dci", "sap")


class FactorSource:
    """Ground-truth factors (integer indices, one column per factor) and the observations they generate."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int:
        return len(self.names)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
        """``n`` random (factors (n, K), observations (n, ...))."""
        raise NotImplementedError

    def sample_given(self, which: np.ndarray, values: np.ndarray, rng) -> tuple[np.ndarray, torch.Tensor]:
        """``len(which)`` random examples, row r with factor ``which[r]`` equal to ``values[r]``."""
        raise NotImplementedError


class RenderedFactors(FactorSource):
    """Every combination of factor indices is valid and ``render(factors)`` draws it (dSprites, a synthetic
    source); factors are sampled uniformly and independently, as disentanglement_lib samples dSprites."""

    def __init__(self, names, sizes, render, chunk: int = 4096):
        self.names, self.sizes = tuple(names), tuple(int(s) for s in sizes)
        self.render, self.chunk = render, chunk
        for name, size in zip(self.names, self.sizes):
            if size < 2:
                raise ValueError(f"factor {name!r} has {size} value(s); a factor must take at least two values "
                                 f"(a constant factor cannot be measured)")

    def factors(self, n, rng):
        return np.stack([rng.integers(0, s, size=n) for s in self.sizes], 1)

    def _observe(self, f):
        return torch.cat([self.render(f[i:i + self.chunk]) for i in range(0, len(f), self.chunk)])

    def sample(self, n, rng):
        f = self.factors(n, rng)
        return f, self._observe(f)

    def sample_given(self, which, values, rng):
        f = self.factors(len(which), rng)
        f[np.arange(len(which)), which] = values
        return f, self._observe(f)


class TableFactors(FactorSource):
    """Rows of a labelled data set: ``x`` (N, ...) with factors (N, K); examples are drawn uniformly from the
    rows, and an example with a given factor value from the rows that have it. Factor values are mapped to
    indices 0..size-1 in sorted order."""

    def __init__(self, x: torch.Tensor, factors, names=None):
        f = np.asarray(torch.as_tensor(factors).cpu())
        if f.ndim != 2 or f.shape[0] != len(x):
            raise ValueError(f"factors must be an (N, K) matrix with one row per example, got shape {f.shape} for "
                             f"{len(x)} examples")
        self.names = tuple(names) if names is not None else tuple(f"factor_{k}" for k in range(f.shape[1]))
        columns = []
        for k in range(f.shape[1]):
            values, index = np.unique(f[:, k], return_inverse=True)
            if len(values) < 2:
                raise ValueError(f"factor column {k} ({self.names[k]!r}) is constant (every example has value "
                                 f"{values[0]:g}): a metric cannot measure how a code follows a factor that does "
                                 f"not vary; drop the column")
            columns.append(index.reshape(-1))
        self.x, self.factors = x, np.stack(columns, 1)
        self.sizes = tuple(int(c.max()) + 1 for c in columns)
        self._rows = [[np.flatnonzero(self.factors[:, k] == v) for v in range(s)] for k, s in enumerate(self.sizes)]

    def sample(self, n, rng):
        rows = rng.integers(0, len(self.x), size=n)
        return self.factors[rows], self.x[torch.as_tensor(rows)]

    def sample_given(self, which, values, rng):
        rows = np.empty(len(which), dtype=np.int64)
        for k in np.unique(which):
            for v in np.unique(values[which == k]):
                at = np.flatnonzero((which == k) & (values == v))
                pool = self._rows[k][v]
                rows[at] = pool[rng.integers(0, len(pool), size=len(at))]
        return self.factors[rows], self.x[torch.as_tensor(rows)]


def factor_source(data, split: str = "test") -> FactorSource:
    """The factor source of a :class:`~ppvae.data.Dataset`: its renderer where it has one (dSprites), else the
    rows of ``split`` with their (N, K) factor labels; one line saying why where the data has no factors."""
    if getattr(data, "render", None) is not None:
        return RenderedFactors(data.factor_names, data.factor_sizes, data.render)
    x, y = (data.test, data.test_labels) if split == "test" else (data.train, data.train_labels)
    if y is None:
        raise ValueError(f"dataset {data.name!r} has no ground-truth factors (no labels); disentanglement metrics "
                         f"need (N, K) factor labels, e.g. data.name=dsprites or a file dataset with a y matrix")
    if y.ndim != 2:
        raise ValueError(f"dataset {data.name!r} has class labels of shape {tuple(y.shape)}, not an (N, K) matrix "
                         f"of ground-truth factors; disentanglement metrics need factors, e.g. data.name=dsprites")
    return TableFactors(x, y, getattr(data, "factor_names", None))


def representation(model, device=None, batch_size: int = 512):
    """``represent(x) -> (n, D) numpy``: the model's point code ``encode(x)`` (the posterior mean for a Gaussian
    guide, as disentanglement_lib scores), in eval mode, in batches."""
    from ..inference.program import conditional, require
    encode = require(model, "encode", "disentanglement metrics")
    if conditional(model):
        raise ValueError(f"{type(model).__name__} is conditional (its code is read together with a label); "
                         f"disentanglement metrics score an unconditional code z = encode(x)")
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))

    @torch.no_grad()
    def represent(x: torch.Tensor) -> np.ndarray:
        was = model.training
        model.eval()
        try:
            out = [encode(x[i:i + batch_size].to(device)).reshape(min(batch_size, len(x) - i), -1).cpu()
                   for i in range(0, len(x), batch_size)]
        finally:
            model.train(was)
        return torch.cat(out).double().numpy()

    return represent


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield min(size, total - start)


# ---- BetaVAE score -----------------------------------------------------------------------------------------
def _beta_vae_points(source, represent, rng, batch_size, num_points, progress=False, desc="BetaVAE points"):
    features, labels = [], []
    with bar(num_points, desc, progress, unit="point") as shown:
        for p in _chunks(num_points, max(1, 4096 // batch_size)):
            which = rng.integers(0, source.num_factors, size=p)
            f1, x1 = source.sample(p * batch_size, rng)
            rows = np.repeat(which, batch_size)
            _, x2 = source.sample_given(rows, f1[np.arange(len(rows)), rows], rng)
            z1, z2 = represent(x1), represent(x2)
            features.append(np.abs(z1 - z2).reshape(p, batch_size, -1).mean(1))
            labels.append(which)
            shown.update(p)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(source: FactorSource, represent, rng: np.random.Generator, *, batch_size: int = 64,
                   num_train: int = 10000, num_eval: int = 5000, seed: int = 0, progress: bool = False) -> dict:
    """The BetaVAE score (Higgins et al. 2017, sec. 3; disentanglement_lib ``beta_vae.py``).

    A point: a factor k uniformly at random, ``batch_size`` pairs of examples sharing factor k (the others drawn
    independently), the feature mean_b |z(x1_b) - z(x2_b)| and the label k. A logistic regression is fitted on
    ``num_train`` points; ``score`` is its accuracy on ``num_eval`` new points (1 for a code in which each factor
    moves its own dimensions; 1 / K, chance, for a code that ignores the factors). ``progress``: a bar over the
    points, updated per chunk."""
    from sklearn.linear_model import LogisticRegression
    train_x, train_y = _beta_vae_points(source, represent, rng, batch_size, num_train, progress,
                                        "BetaVAE training points")
    model = LogisticRegression(random_state=seed, max_iter=1000).fit(train_x, train_y)
    eval_x, eval_y = _beta_vae_points(source, represent, rng, batch_size, num_eval, progress,
                                      "BetaVAE held-out points")
    return {"score": float(model.score(eval_x, eval_y)), "train_accuracy": float(model.score(train_x, train_y))}


# ---- FactorVAE score ---------------------------------------------------------------------------------------
def _factor_vae_votes(source, represent, rng, batch_size, num_points, scale, active, progress=False,
                      desc="FactorVAE votes"):
    votes = np.zeros((source.num_factors, len(scale)), dtype=np.int64)
    active_index = np.flatnonzero(active)
    with bar(num_points, desc, progress, unit="vote") as shown:
        for p in _chunks(num_points, max(1, 4096 // batch_size)):
            which = rng.integers(0, source.num_factors, size=p)
            f0, _ = source.sample(p, rng)  # the fixed value: that of a random example, as disentanglement_lib
            rows = np.repeat(which, batch_size)
            _, x = source.sample_given(rows, np.repeat(f0[np.arange(p), which], batch_size), rng)
            z = represent(x).reshape(p, batch_size, -1)
            local = z.var(axis=1, ddof=1)[:, active] / scale[active]
            np.add.at(votes, (which, active_index[local.argmin(1)]), 1)
            shown.update(p)
    return votes


def factor_vae_score(source: FactorSource, represent, rng: np.random.Generator, *, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000, num_variance_estimate: int = 10000,
                     threshold: float = 0.05, progress: bool = False) -> dict:
    """The FactorVAE score (Kim & Mnih 2018, sec. 4; disentanglement_lib ``factor_vae.py``).

    Each code dimension's variance over ``num_variance_estimate`` examples scales it; dimensions with standard
    deviation below ``threshold`` are pruned (collapsed). A vote: a factor k at random held at one value over
    ``batch_size`` examples; the active dimension whose scaled variance is smallest votes for k. The classifier
    maps each dimension to the factor it got most votes for; ``score`` is its accuracy on ``num_eval`` new votes.
    With no active dimension the score is 0. ``progress``: a bar over the votes, updated per chunk."""
    _, x = source.sample(num_variance_estimate, rng)
    variances = represent(x).var(axis=0, ddof=1)
    active = np.sqrt(variances) >= threshold
    if not active.any():
        return {"score": 0.0, "train_accuracy": 0.0, "num_active_dims": 0}
    train = _factor_vae_votes(source, represent, rng, batch_size, num_train, variances, active, progress,
                              "FactorVAE training votes")
    classifier = train.argmax(0)
    columns = np.arange(train.shape[1])
    evaluation = _factor_vae_votes(source, represent, rng, batch_size, num_eval, variances, active, progress,
                                   "FactorVAE held-out votes")
    return {"score": float(evaluation[classifier, columns].sum() / evaluation.sum()),
            "train_accuracy": float(train[classifier, columns].sum() / train.sum()),
            "num_active_dims": int(active.sum())}


# ---- MIG ---------------------------------------------------------------------------------------------------
def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each code dimension binned into ``num_bins`` equal-width bins over its range (disentanglement_lib's
    histogram discretizer)."""
    return np.stack([np.digitize(c, np.histogram(c, num_bins)[1][:-1]) for c in codes.T], 1)


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """I(z_i; v_k) in nats (codes x factors) of the discretized code dimensions with the factors."""
    from sklearn.metrics import mutual_info_score
    binned = discretize(codes, num_bins)
    return np.array([[mutual_info_score(factors[:, k], binned[:, i]) for k in range(factors.shape[1])]
                     for i in range(binned.shape[1])])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats of each factor column (empirical)."""
    from sklearn.metrics import mutual_info_score
    return np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, *, num_bins: int = 20) -> dict:
    """The mutual information gap (Chen et al. 2018, eq. 6; disentanglement_lib ``mig.py``):

        MIG = (1/K) sum_k [I(z_(1); v_k) - I(z_(2); v_k)] / H(v_k)

    with z_(1), z_(2) the code dimensions of largest and second-largest (discretized) mutual information with
    factor k. Also returns ``normalized_mi``, I(z_i; v_k) / H(v_k), the matrix the traversal labels come from."""
    _check_codes(codes, factors)
    m = mutual_information_matrix(codes, factors, num_bins)
    h = factor_entropies(factors)
    top = np.sort(m, axis=0)[::-1]
    gap = (top[0] - top[1]) / h if m.shape[0] > 1 else top[0] / h
    return {"score": float(gap.mean()), "per_factor": gap.tolist(), "normalized_mi": (m / h).tolist()}


# ---- DCI ---------------------------------------------------------------------------------------------------
def _one_minus_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    from scipy.stats import entropy
    return 1.0 - entropy(p + 1e-11, base=p.shape[axis], axis=axis)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix R (codes x factors), as disentanglement_lib."""
    r = np.abs(np.asarray(importance, dtype=float))
    per_code = _one_minus_entropy(r, axis=1)     # each code's importance spread over the factors
    per_factor = _one_minus_entropy(r, axis=0)   # each factor's importance spread over the codes
    weights = r if r.sum() > 0 else np.ones_like(r)
    d = float((per_code * weights.sum(1) / weights.sum()).sum())
    c = float((per_factor * weights.sum(0) / weights.sum()).sum())
    return d, c


def dci(codes_train, factors_train, codes_test, factors_test, *, seed: int = 0, progress: bool = False) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018; disentanglement_lib
    ``dci.py``): one gradient-boosted tree classifier (scikit-learn's defaults) per factor on the code; its
    feature importances are that factor's column of R. ``informativeness_test`` is the mean held-out accuracy.
    ``progress``: a bar over the factors, one tree ensemble each."""
    from sklearn.ensemble import GradientBoostingClassifier
    _check_codes(codes_train, factors_train)
    importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    train_acc, test_acc = [], []
    with bar(factors_train.shape[1], "DCI boosted trees", progress, unit="factor") as shown:
        for k in range(factors_train.shape[1]):
            model = GradientBoostingClassifier(random_state=seed).fit(codes_train, factors_train[:, k])
            importance[:, k] = np.abs(model.feature_importances_)
            train_acc.append(np.mean(model.predict(codes_train) == factors_train[:, k]))
            test_acc.append(np.mean(model.predict(codes_test) == factors_test[:, k]))
            shown.update()
    d, c = dci_from_importance(importance)
    return {"disentanglement": d, "completeness": c, "informativeness_train": float(np.mean(train_acc)),
            "informativeness_test": float(np.mean(test_acc)), "importance": importance.tolist()}


# ---- SAP ---------------------------------------------------------------------------------------------------
def sap(codes_train, factors_train, codes_test, factors_test, *, continuous: bool = False,
        progress: bool = False) -> dict:
    """The SAP score (Kumar et al. 2018, sec. 3; disentanglement_lib ``sap_score.py``): a score S_ik of how well
    code dimension i alone predicts factor k, then the mean over factors of the gap between the two best
    dimensions. Discrete factors: S_ik is the held-out accuracy of a linear SVM (C = 0.01, balanced classes) on
    z_i; continuous: the squared correlation of z_i with v_k (0 where z_i is constant). ``progress``: a bar over
    the code dimensions."""
    from sklearn.svm import LinearSVC
    _check_codes(codes_train, factors_train)
    d, k_count = codes_train.shape[1], factors_train.shape[1]
    scores = np.zeros((d, k_count))
    with bar(d, "SAP classifiers", progress, unit="dimension") as shown:
        for i in range(d):
            for k in range(k_count):
                if continuous:
                    cov = np.cov(codes_train[:, i], factors_train[:, k], ddof=1)
                    scores[i, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
                else:
                    svm = LinearSVC(C=0.01, class_weight="balanced").fit(codes_train[:, i:i + 1],
                                                                         factors_train[:, k])
                    scores[i, k] = np.mean(svm.predict(codes_test[:, i:i + 1]) == factors_test[:, k])
            shown.update()
    top = np.sort(scores, axis=0)
    gap = top[-1] - top[-2] if d > 1 else top[-1]
    return {"score": float(gap.mean()), "per_factor": gap.tolist(), "matrix": scores.tolist()}


def _check_codes(codes, factors):
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, K) must have one row per example, got shapes "
                         f"{codes.shape} and {factors.shape}")
    if not np.isfinite(codes).all():
        raise ValueError("the codes contain non-finite values (NaN or inf); the model's encode gave them")


# ---- all of them -------------------------------------------------------------------------------------------
def evaluate_codes(source: FactorSource, represent, *, seed: int = 0, num_train: int = 10000,
                   num_eval: int = 5000, num_votes: int = 1000, dci_train: int = 2000, dci_eval: int = 1000,
                   batch_size: int = 64, metrics=METRICS, progress: bool = False) -> dict:
    """The chosen metrics of a representation on a factor source, with the sample sizes and seed they used.

    ``num_train`` / ``num_eval`` (code, factor) pairs for MIG and SAP (disentanglement_lib's 10,000 / 5,000);
    DCI's gradient-boosted trees fit the first ``dci_train`` of them and are scored on the first ``dci_eval``
    held-out ones (disentanglement_lib: 10,000 / 5,000; about 150 s on 2 CPU cores for dSprites, hence less
    here by default). BetaVAE and FactorVAE train on ``num_votes`` points of ``batch_size`` examples each and are
    scored on half as many (disentanglement_lib: 10,000 and 5,000 points, which costs 2 million encoded images).
    Each metric draws from its own random stream (seeded by ``seed`` and the metric's name), so a metric's value
    does not depend on which others were computed. ``progress``: a bar over the metrics, and one inside each over
    its points, votes, factors or dimensions."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown disentanglement metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    settings = {"seed": seed, "num_train": num_train, "num_eval": num_eval, "num_votes": num_votes,
                "dci_train": dci_train, "dci_eval": dci_eval, "batch_size": batch_size}
    for what, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if what == "seed" else 2):
            raise ValueError(f"{what} must be an integer >= {0 if what == 'seed' else 2}, got {value!r}")

    def stream(name):
        return np.random.default_rng([seed, METRICS.index(name)])

    votes, held_out = num_votes, max(2, num_votes // 2)
    out = {"factor_names": list(source.names), "factor_sizes": list(source.sizes),
           "settings": {**settings, "num_votes_eval": held_out, "num_variance_estimate": num_train,
                        "prune_threshold": 0.05, "mig_bins": 20}}
    codes = bool({"mig", "dci", "sap"} & set(metrics))  # MIG's mutual information is computed for all three
    total = ("beta_vae" in metrics) + ("factor_vae" in metrics) + codes * (2 + ("dci" in metrics) + ("sap" in metrics))
    with Stages("disentanglement", total, progress) as stage:
        if "beta_vae" in metrics:
            stage("BetaVAE")
            out["beta_vae"] = beta_vae_score(source, represent, stream("beta_vae"), batch_size=batch_size,
                                             num_train=votes, num_eval=held_out, seed=seed, progress=progress)
        if "factor_vae" in metrics:
            stage("FactorVAE")
            out["factor_vae"] = factor_vae_score(source, represent, stream("factor_vae"), batch_size=batch_size,
                                                 num_train=votes, num_eval=held_out, num_variance_estimate=num_train,
                                                 progress=progress)
        if codes:
            stage(f"codes of {num_train + num_eval} examples")
            rng = stream("mig")
            f_train, x_train = source.sample(num_train, rng)
            f_test, x_test = source.sample(num_eval, rng)
            z_train, z_test = represent(x_train), represent(x_test)
            _check_codes(z_train, f_train)
            stage("MIG")
            result = mig(z_train, f_train)
            out["mutual_information"] = result.pop("normalized_mi")
            if "mig" in metrics:
                out["mig"] = result
            if "dci" in metrics:
                stage("DCI")
                out["dci"] = dci(z_train[:dci_train], f_train[:dci_train], z_test[:dci_eval], f_test[:dci_eval],
                                 seed=seed, progress=progress)
            if "sap" in metrics:
                stage("SAP")
                out["sap"] = sap(z_train, f_train, z_test, f_test, progress=progress)
    return out


def headline(scores: dict) -> dict[str, float]:
    """One number per metric: BetaVAE, FactorVAE, MIG, DCI disentanglement / completeness / informativeness, SAP."""
    out = {}
    for key, name in (("beta_vae", "beta_vae"), ("factor_vae", "factor_vae"), ("mig", "mig"), ("sap", "sap")):
        if key in scores:
            out[name] = scores[key]["score"]
    if "dci" in scores:
        out.update({"dci_disentanglement": scores["dci"]["disentanglement"],
                    "dci_completeness": scores["dci"]["completeness"],
                    "dci_informativeness": scores["dci"]["informativeness_test"]})
    return out


def evaluate_disentanglement(model, data, *, progress: bool = True, **options) -> dict:
    """All five metrics of a trained model's code on a data set's factors (:func:`factor_source`), plus the most
    informative factor of each code dimension (from the normalized mutual information). ``options`` go to
    :func:`evaluate_codes`; ``progress``: its bars."""
    source = factor_source(data)
    scores = evaluate_codes(source, representation(model), progress=progress, **options)
    if "mutual_information" in scores:
        mi = np.asarray(scores["mutual_information"])
        scores["dimension_factors"] = [source.names[k] for k in mi.argmax(1)]
        scores["dimension_mi"] = mi.max(1).tolist()
    scores["summary"] = headline(scores)
    return scores


DISENTANGLEMENT_FILE = "disentanglement.json"


def disentanglement_report(run_dir, *, device: str = "cpu", figures: bool = True, progress: bool = True,
                           checkpoint: str = "auto", **options) -> dict:
    """``ppvae disentanglement RUN``: the metrics of a run's model on its data's factors, written atomically to
    ``RUN/disentanglement.json`` (with the sample sizes and seed), and the figures ``mutual_information.png`` and
    ``factor_traversals.png`` in ``RUN/figures/``. Refused, with the reason, where the run cannot be rebuilt
    exactly or its data has no factors. ``progress``: a bar over the metrics (``--quiet``: none). ``checkpoint``:
    which weights, as :func:`~ppvae.load_run` reads them (``"auto"``: ``best.pt`` where the run kept one, else the
    latest); the scores record the file and the epoch."""
    import json
    from pathlib import Path

    from .. import plots
    from ..inference.checkpoint import atomic_write_bytes
    from ..inference.run import load_run
    from ..traces import seeded_eval
    from .figures import latent_traversals

    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    source = factor_source(run.data)  # before any work: data without factors is refused here
    scores = evaluate_disentanglement(run.model, run.data, progress=progress, **options)
    scores["run"] = str(run_dir)
    scores["epochs"] = run.metrics[-1]["epoch"] if run.metrics else 0
    scores["checkpoint"] = run.read_from
    atomic_write_bytes(run_dir / DISENTANGLEMENT_FILE, json.dumps(scores, indent=2).encode())
    if figures and "mutual_information" in scores:
        out = run_dir / "figures"
        plots.plot_mutual_information(scores["mutual_information"], list(source.names),
                                      path=out / "mutual_information.png")
        mi = np.asarray(scores["mutual_information"]).max(1)
        dims = [int(d) for d in np.argsort(-mi)[:10]]
        x = run.data.test[:1].to(next(run.model.parameters()).device)
        with seeded_eval(options.get("seed", 0), x.device, run.model):
            grid = latent_traversals(run.model, x, dims)
        plots.plot_factor_traversals(grid.cpu(), dims, [scores["dimension_factors"][d] for d in dims],
                                     [float(mi[d]) for d in dims], path=out / "factor_traversals.png")
    return scores


__all__ = ["DISENTANGLEMENT_FILE", "disentanglement_report", "FactorSource", "RenderedFactors", "TableFactors",
           "factor_source", "representation", "beta_vae_score",
           "factor_vae_score", "mig", "dci", "dci_from_importance", "sap", "mutual_information_matrix",
           "evaluate_codes", "evaluate_disentanglement", "headline", "METRICS"]
