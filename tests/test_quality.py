"""Sample quality as numbers (Frechet distance, sharpness) and the ex-post mixture sampler."""

import numpy as np
import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.evaluate.quality import fit_gmm, frechet_distance, frechet_from_moments, sample_gmm, sharpness


def test_the_frechet_distance_of_two_gaussians_is_the_closed_form():
    # |mu1 - mu2|^2 = 1 + 4; Tr(S1 + S2 - 2 (S1 S2)^1/2) = (1 + 4 - 2*2) + (4 + 1 - 2*2) = 2
    assert frechet_from_moments([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 1.0])) == pytest.approx(7.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200_000, 2)) * [1, 2]
    b = rng.normal(size=(200_000, 2)) * [2, 1] + [1, 2]
    assert frechet_distance(a, b) == pytest.approx(7.0, abs=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"two \(N, D\) feature arrays of the same D"):
        frechet_distance(a, b[:, :1])


def test_sharpness_is_the_variance_of_the_laplacian():
    checker = (torch.arange(10)[:, None] + torch.arange(10)[None, :]) % 2  # 0/1: the Laplacian is +-4 inside
    x = checker.float()[None, None]
    assert sharpness(x) == pytest.approx(16 * 64 / 63)  # 8x8 valid values, half +4, half -4 (unbiased variance)
    assert sharpness(torch.full((3, 1, 9, 9), 0.7)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert sharpness(blurred) < sharpness(x) / 4


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("q") / "run"
    ppvae.train_spec({"device": "cpu", "data": {"name": "digits"}, "model": {"latent_dim": 6},
                      "train": {"epochs": 15, "figures": False}}, run_dir=run, progress=False)
    return run


def test_sample_quality_is_reported_by_evaluate_with_the_classifier_accuracy(digits_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPVAE_CACHE", str(tmp_path / "cache"))
    assert main(["evaluate", str(digits_run), "-k", "10", "--no-figures", "--sample-quality"]) == 0
    out = capsys.readouterr().out
    assert "sample quality" in out and "gmm samples (10 components)" in out
    q = ppvae.evaluate_run(digits_run, num_samples=10, figures=False, quality=True)["sample_quality"]
    assert q["classifier_test_accuracy"] > 0.85  # 10 classes of 8x8 digits
    assert len(list((tmp_path / "cache" / "classifiers").glob("*.pt"))) == 1  # trained once, then cached
    for name in ("prior samples", "reconstructions", "gmm samples (10 components)"):
        assert q[name]["frechet_distance"] > 0 and q[name]["sharpness"] > 0
    # decoder means are blurrier than the data; real training images are the floor of the distance
    assert q["prior samples"]["sharpness_to_real"] < 1.0 and q["reconstructions"]["sharpness_to_real"] < 1.0
    floor = q["training images"]["frechet_distance"]
    assert all(floor < q[name]["frechet_distance"] for name in ("prior samples", "reconstructions"))


def test_the_gmm_sampler_from_python_and_the_cli(digits_run, tmp_path):
    run = ppvae.load_run(digits_run)
    gmm = fit_gmm(run.model, run.data.train, 5, seed=0)
    x = sample_gmm(run.model, gmm, 7, seed=1)
    assert x.shape == (7, 1, 8, 8) and torch.equal(x, sample_gmm(run.model, gmm, 7, seed=1))
    assert main(["sample", str(digits_run), "--sampler", "gmm", "--components", "4", "-n", "8",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").is_file()
    with pytest.raises(ValueError, match=r"--components 100000 is more than the 1294 training codes"):
        fit_gmm(run.model, run.data.train, 100000)


def test_the_gmm_sampler_needs_a_model_that_encodes_to_a_continuous_code(capsys, tmp_path):
    import pyro
    import pyro.distributions as dist

    def model(batch):
        with pyro.plate("data", batch["x"].shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([batch["x"].shape[1]]).to_event(1), obs=batch["x"])

    def guide(batch):
        pass

    with pytest.raises(ValueError, match=r"the gmm sampler needs .*encode"):
        fit_gmm(ppvae.from_functions(model, guide, torch.nn.Linear(3, 3)), torch.randn(10, 3))


def _two_cluster_model():
    """x = z + noise, q(z | x) = N(x, 0.1), p(z) = N(0, I): encode(x) = x, decode(z) = z, generate draws the prior."""
    import pyro
    import pyro.distributions as dist

    def model(batch):
        with pyro.plate("data", batch["x"].shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.1).to_event(1), obs=batch["x"])

    def guide(batch):
        with pyro.plate("data", batch["x"].shape[0]):
            pyro.sample("z", dist.Normal(batch["x"], 0.1).to_event(1))

    vae = ppvae.from_functions(model, guide, torch.nn.Linear(1, 1))
    ppvae.program(vae).sites({"x": torch.zeros(3, 2)})  # read its sites once (as attach_data does for a run)
    return vae


def _clusters(n, seed):  # two clusters at (-3, 0) and (3, 0), sd 0.3: an aggregate posterior far from N(0, I)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.3 + torch.tensor([3.0, 0.0]) * torch.sign(torch.randn(n, 1, generator=g))


def test_the_gmm_sampler_draws_where_the_codes_are_not_where_the_prior_is():
    model, train, test = _two_cluster_model(), _clusters(2000, 0), _clusters(2000, 1).numpy()
    gmm = fit_gmm(model, train, 2, seed=0)
    x = sample_gmm(model, gmm, 2000, seed=0).numpy()
    torch.manual_seed(0)
    prior = ppvae.program(model).generate(2000).numpy()
    # prior N(0, I) against the data's moments (mean 0, cov diag(9.09, 0.09)): (9.09 + 1 - 2 * 3.01) + (0.09 + 1 -
    # 2 * 0.3) = 4.55; the mixture's samples match them
    assert frechet_distance(test, prior) == pytest.approx(4.55, abs=0.4)
    assert frechet_distance(test, x) < 0.1
    # and, unlike one Gaussian of the same moments, leave the gap between the clusters empty
    assert (np.abs(x[:, 0]) < 1.5).mean() < 0.01
    one = sample_gmm(model, fit_gmm(model, train, 1, seed=0), 2000, seed=0).numpy()
    assert (np.abs(one[:, 0]) < 1.5).mean() > 0.3


def test_the_mixture_is_fitted_and_sampled_with_one_thread(monkeypatch):
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    fit, sample = GaussianMixture.fit, GaussianMixture.sample

    def record(method):
        def wrapped(self, *args, **kwargs):
            seen.append(max(info["num_threads"] for info in threadpool_info()))
            return method(self, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(GaussianMixture, "fit", record(fit))
    monkeypatch.setattr(GaussianMixture, "sample", record(sample))
    model = _two_cluster_model()
    with threadpool_limits(4):  # as a machine with several cores would have it
        gmm = fit_gmm(model, _clusters(200, 0), 2, seed=0)
        sample_gmm(model, gmm, 10, seed=0)
    assert seen == [1, 1]
