"""Sample quality as numbers: a Frechet distance in a small classifier's features, and sharpness.

**Frechet distance** (as FID, Heusel et al. 2017, with no download): features are the last hidden layer of a
classifier trained on the same dataset's training split (:func:`feature_classifier`; an MLP, 2,000 Adam steps,
cached by the dataset's spec in ``~/.cache/ppvae/classifiers``, its test accuracy reported beside every
distance). Between Gaussians fitted to the two feature sets,

.. math::

    d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert^2
          + \\mathrm{Tr}\\big(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\big).

Only distances computed with the same classifier and the same number of examples compare.

**Sharpness**: the mean over images of the variance of their Laplacian (the discrete 3x3 kernel, per channel),
reported against that of real test images: blurry means score far below the data (the seed article's Gaussian /
MSE pitfall), sharp samples near it.

**Ex-post density estimation** (Ghosh et al. 2020): :func:`fit_gmm` fits a Gaussian mixture (scikit-learn) to the
posterior means of the training set; :func:`sample_gmm` decodes draws from it instead of the prior. It can only beat
the prior where the aggregate posterior departs from it: on ppvae's default VAE (20-D, MNIST) the mixture's samples
sit near the floor where prior samples do not, while a collapsed or barely trained code (reconstructions no closer
to the data than prior samples) leaves it nothing to find (``bench/sampler.py``). The mixture is fitted and sampled
with one BLAS / OpenMP thread: its matrices are small, and two threads beside torch's made a fit of 10 components to
3,600 20-D codes 7 times slower on 2 idle cores (1.3 s instead of 0.19 s) and 100 times slower on 2 busy ones (46 s
instead of 0.47 s).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..batch import batches
from ..inference.program import program, require
from ..registry import int_option

CLASSIFIER_STEPS = 2000
#: the feature classifier: an MLP whose last hidden layer (32 units) gives the features; few units, so that a
#: few hundred images estimate their covariance
FEATURE_NET = {"name": "mlp", "hidden": [256, 32]}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The squared Frechet distance between Gaussians fitted to the rows of ``a`` and of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two (N, D) feature arrays of the same D with N >= 2, got "
                         f"{a.shape} and {b.shape}")
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def frechet_from_moments(mu1, s1, mu2, s2) -> float:
    from scipy import linalg

    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    eps = 1e-6 * np.eye(len(s1))  # keeps the product's square root defined where a covariance is near singular
    s1, s2 = s1 + eps, s2 + eps
    root = np.asarray(linalg.sqrtm(s1 @ s2)).real
    return float(((np.asarray(mu1) - np.asarray(mu2)) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def sharpness(x: torch.Tensor) -> float:
    """Mean over images of the variance of the Laplacian (per channel, valid region) of (N, C, H, W) images."""
    if x.ndim != 4 or x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"sharpness needs (N, C, H, W) images of at least 3 x 3, got shape {tuple(x.shape)}")
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    c = x.shape[1]
    lap = F.conv2d(x, kernel.expand(c, 1, 3, 3), groups=c)
    return float(lap.flatten(2).var(-1).mean())


class _Features(torch.nn.Module):
    """A trained classifier's last hidden layer (the input of its output layer)."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier
        self.last = [m for m in classifier.modules() if isinstance(m, torch.nn.Linear)][-1]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        hook = self.last.register_forward_hook(lambda m, inputs, output: out.append(inputs[0]))
        try:
            self.classifier(x)
        finally:
            hook.remove()
        return out[0]


def _cache_dir() -> Path:
    return Path(os.environ.get("PPVAE_CACHE", Path.home() / ".cache" / "ppvae")) / "classifiers"


def feature_classifier(data, *, seed: int = 0) -> tuple[_Features, float]:
    """(features, test accuracy) of the dataset's feature classifier, trained once and cached by the dataset's
    spec (data with class labels only)."""
    from ..evaluate.classify import accuracy, train_classifier

    if data.train_labels is None or data.train_labels.ndim != 1 or data.num_classes is None:
        raise ValueError(f"a Frechet distance needs a classifier of the data's classes, and dataset {data.name!r} has "
                         f"no class labels")
    key = hashlib.sha1(json.dumps({"spec": data.spec or data.name, "shape": list(data.event_shape),
                                   "n": len(data.train), "net": FEATURE_NET, "steps": CLASSIFIER_STEPS,
                                   "seed": seed}, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = _cache_dir() / f"{key}.pt"
    from ..registry import ENCODERS, component

    net = component(ENCODERS, FEATURE_NET, data.event_shape, data.num_classes)
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(stored["state"])
        acc = float(stored["test_accuracy"])
    else:
        net = train_classifier(data.train, data.train_labels, data.num_classes, net=FEATURE_NET,
                               steps=CLASSIFIER_STEPS, seed=seed)
        acc = accuracy(net, data.test, data.test_labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"state": net.state_dict(), "test_accuracy": acc}, tmp)
        os.replace(tmp, path)
    net.eval()
    return _Features(net), acc


def features(extractor: _Features, x: torch.Tensor, chunk: int = 2000) -> np.ndarray:
    return torch.cat([extractor(part.cpu()) for part in x.split(chunk)]).numpy()


def fit_gmm(model, x: torch.Tensor, components: int = 10, *, seed: int = 0, chunk: int = 1000):
    """A Gaussian mixture (full covariances, scikit-learn) fitted to the posterior means ``model.encode(x)``."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    components = int_option(components, 1, "--components (mixture components)")
    encode = require(model, "encode", "the gmm sampler")
    require(model, "decode", "the gmm sampler")
    if not getattr(model, "latent_dim", 1):
        raise ValueError(f"the gmm sampler needs a continuous latent code, and {type(model).__name__} has none "
                         f"(latent_dim = 0)")
    with torch.no_grad():
        z = torch.cat([encode(part["x"]) for part in batches({"x": x}, chunk)])
    if not z.is_floating_point():
        raise ValueError(f"the gmm sampler needs a continuous latent code, and "
                         f"{type(model).__name__}'s encode gives {z.dtype}")
    z = z.flatten(1).cpu().double().numpy()
    if components > len(z):
        raise ValueError(f"--components {components} is more than the {len(z)} training codes it is fitted to")
    with threadpool_limits(1):  # small matrices: threads only contend (see the module's docstring)
        return GaussianMixture(components, covariance_type="full", random_state=seed, reg_covar=1e-5).fit(z)


def sample_gmm(model, gmm, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` decodes of codes drawn from a fitted mixture (the decoder's mean, as ``model.generate``)."""
    from threadpoolctl import threadpool_limits

    n = int_option(n, 1, "n")
    gmm.random_state = seed
    with threadpool_limits(1):
        z, _ = gmm.sample(n)
    z = torch.as_tensor(z[np.random.default_rng(seed).permutation(n)], dtype=torch.float32)
    p = program(model)
    with torch.no_grad():
        return p.decode(z.to(p.device))


def sample_quality(model, data, *, n: int = 1000, seed: int = 0, gmm_components: int | None = 10) -> dict:
    """Frechet distances and sharpness of prior samples, reconstructions and (with ``gmm_components``) samples of
    the ex-post mixture, against the test images; the classifier's test accuracy beside them."""
    generate = require(model, "generate", "sample quality")
    x = data.test[:n]
    extractor, acc = feature_classifier(data, seed=seed)
    real = features(extractor, x)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        drawn = {"prior samples": generate(len(x)).cpu()}
        if program(model).can("reconstruct"):
            drawn["reconstructions"] = torch.cat([program(model).reconstruct(part.to(device)).cpu()
                                                  for part in x.split(1000)])
        if gmm_components:
            gmm = fit_gmm(model, data.train.to(device), gmm_components, seed=seed)
            drawn[f"gmm samples ({gmm_components} components)"] = sample_gmm(model, gmm, len(x), seed=seed).cpu()
    out = {"classifier_test_accuracy": acc, "num_examples": len(x), "sharpness_real": sharpness(x),
           "how": f"Frechet distance between Gaussians fitted to the last hidden layer of an MLP classifier trained "
                  f"on this dataset ({CLASSIFIER_STEPS} Adam steps; test accuracy above), {len(x)} test images "
                  f"against as many generated ones; sharpness: mean variance of the 3x3 Laplacian"}
    # the floor: as many training images against the same test images
    reference = data.train[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:len(x)]]
    out["training images"] = {"frechet_distance": frechet_distance(real, features(extractor, reference)),
                              "sharpness": sharpness(reference), "sharpness_to_real": sharpness(reference) /
                              max(out["sharpness_real"], 1e-12)}
    for name, images in drawn.items():
        out[name] = {"frechet_distance": frechet_distance(real, features(extractor, images.reshape(x.shape))),
                     "sharpness": sharpness(images.reshape(x.shape)),
                     "sharpness_to_real": sharpness(images.reshape(x.shape)) / max(out["sharpness_real"], 1e-12)}
    return out
