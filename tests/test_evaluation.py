"""Evaluation against exact answers: the linear-Gaussian VAE is probabilistic PCA, whose log p(x) is known."""

import json
import math

import arviz as az
import numpy as np
import pytest
import torch
from conftest import TINY

import ppvae
from ppvae import diagnostics as diag
from ppvae.cli import main
from ppvae.evaluate import iwae_log_likelihood, log_importance_weights
from ppvae.evaluate.exact import (
    gaussian_log_likelihood,
    linear_gaussian_log_likelihood,
    linear_gaussian_parameters,
    ppca_mle,
    set_exact_posterior_guide,
)
from ppvae.inference.run import train_spec

D = 6


def _linear_vae(latent_dim, scale=1.0, learn="global"):
    return ppvae.VAE((D,), latent_dim, encoder={"name": "mlp", "hidden": []}, decoder={"name": "mlp", "hidden": []},
                     likelihood={"name": "gaussian", "learn_scale": learn, "scale": scale})


def _model_with_columns(column_norms, sigma=0.5, seed=0):
    """A linear-Gaussian VAE whose W has orthogonal columns of the given norms, with the exact-posterior guide."""
    torch.manual_seed(seed)
    vae = _linear_vae(len(column_norms), scale=sigma, learn="none")
    q, _ = torch.linalg.qr(torch.randn(D, len(column_norms)))
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(q * torch.tensor(column_norms))
        vae.decoder.net[0].bias.copy_(torch.randn(D))
    set_exact_posterior_guide(vae)
    return vae


def _sample(vae, n, seed=1):
    w, b, sigma = linear_gaussian_parameters(vae)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, w.shape[1], generator=g) @ w.T + b + sigma * torch.randn(n, D, generator=g)


@pytest.fixture(scope="module")
def trained_ppca():
    torch.manual_seed(0)
    w_true, b_true = torch.randn(D, 2) * 1.5, torch.randn(D)
    x = torch.randn(3000, 2) @ w_true.T + b_true + 0.3 * torch.randn(3000, D)
    data = ppvae.dataset_from_array(x)
    vae = _linear_vae(2)
    ppvae.train(vae, data, epochs=100, batch_size=100, objective="TraceMeanField_ELBO",
                optimizer={"name": "adam", "lr": 1e-2}, device="cpu", progress=False, figures=False)
    return vae, data


def test_exact_posterior_guide_makes_every_importance_weight_the_exact_likelihood():
    vae = _model_with_columns([2.0, 1.0, 0.5])
    x = _sample(vae, 200)
    exact = linear_gaussian_log_likelihood(vae, x)
    lw = log_importance_weights(vae, x, 37, max_rows=1000)  # 37 particles in chunks of 5: bounded memory
    assert lw.shape == (37, 200)
    assert torch.allclose(lw.double(), exact.expand(37, -1), atol=1e-4)
    assert torch.allclose(iwae_log_likelihood(vae, x, 1).double(), exact, atol=1e-4)


def test_iwae_approaches_the_exact_log_likelihood_of_a_trained_linear_vae(trained_ppca):
    vae, data = trained_ppca
    exact = linear_gaussian_log_likelihood(vae, data.test).mean().item()
    bounds = [iwae_log_likelihood(vae, data.test, k).double().mean().item() for k in (1, 10, 100, 1000)]
    # the bound rises with K ...
    assert bounds[1] > bounds[0] + 0.03 and bounds[2] > bounds[1] and bounds[3] > bounds[2] - 0.005
    # ... stays below the exact value up to Monte Carlo error, and gets within 0.02 nats of it
    assert bounds[3] <= exact + 0.005
    assert exact - bounds[3] < 0.02
    assert exact - bounds[0] > 0.05  # the ELBO itself is visibly looser


def test_trained_linear_vae_reaches_the_ppca_maximum_likelihood(trained_ppca):
    vae, data = trained_ppca
    w, b, sigma = ppca_mle(data.train, 2)
    mle = gaussian_log_likelihood(data.train, w, b, sigma).mean().item()
    trained = linear_gaussian_log_likelihood(vae, data.train).mean().item()
    assert trained <= mle + 1e-6  # nothing beats the maximum likelihood on the data it was fitted to
    assert mle - trained < 0.05
    assert float(linear_gaussian_parameters(vae)[2]) == pytest.approx(sigma, rel=0.05)


def test_active_units_and_kl_per_dimension_recover_the_used_dimensions():
    vae = _model_with_columns([2.0, 0.0, 1.5, 0.0, 0.0])  # dims 0 and 2 used
    x = _sample(vae, 2000)
    active, variance = diag.active_units(vae, x)
    assert active == 2
    assert variance[[1, 3, 4]].max() < 1e-10 and variance[[0, 2]].min() > 0.5
    kl = diag.kl_per_dimension(vae, x)
    assert kl[[1, 3, 4]].abs().max() < 1e-5 and kl[[0, 2]].min() > 0.5
    # the exact per-dimension KL: 0.5 * E[mu^2] + 0.5 * (s^2 - 1 - log s^2), s^2 = sigma^2 / m
    w, _, sigma = linear_gaussian_parameters(vae)
    m = (w**2).sum(0) + sigma**2
    s2 = sigma**2 / m
    mu = vae.encode(x)
    expected = 0.5 * (mu**2).mean(0) + 0.5 * (s2 - 1 - torch.log(s2))
    assert torch.allclose(kl, expected, atol=1e-4)
    warnings = diag.collapse_warnings(5, active, float(kl.sum()), kl.tolist())
    assert any("only 2 of 5 latent units are active" in w for w in warnings)


def test_a_two_site_model_is_summarized_site_by_site():
    """Active units and the KL per dimension of each latent site, not pooled over the sites (z1 and z2 of a
    hierarchical model are different codes)."""
    import re

    from user_models import HierarchicalVAE

    from ppvae.evaluate.report import evaluate_model, summary

    torch.manual_seed(0)
    report, _ = evaluate_model(HierarchicalVAE((16,), z1_dim=3, z2_dim=2, hidden=16), torch.rand(40, 16).round(),
                               num_samples=5, posterior_draws=5)
    units, kl = report["active_units"]["sites"], report["kl_per_dimension"]["sites"]
    assert {k: v["of"] for k, v in units.items()} == {"z1": 3, "z2": 2} and {k: len(v) for k, v in kl.items()} == \
        {"z1": 3, "z2": 2}
    text = summary(report)
    assert f"active units        z1: {units['z1']['value']} of 3; z2: {units['z2']['value']} of 2 (" in text, text
    for site in ("z1", "z2"):  # a line per site, its dimensions numbered within it
        assert re.search(rf"^ +(KL per dimension +)?{site}: {' '.join(f'{v:.2f}' for v in kl[site])}$", text, re.M)
    warnings = diag.collapse_warnings(5, 1, 2.0, [0.5, 0.0, 0.0, 0.2, 0.003], sites={"z1": 1, "z2": 0},
                                      kl_sites={"z1": [0.5, 0.0, 0.0], "z2": [0.2, 0.003]})
    assert "only 1 of 5 latent units are active (z1: 1, z2: 0)" in warnings[0]
    assert warnings[1] == "latent dimensions z1 [1, 2]; z2 [1] carry less than 0.01 nats of KL each."


def test_mutual_information_matches_the_closed_form():
    vae = _model_with_columns([1.0, 0.5], sigma=0.5)
    x = _sample(vae, 1000)
    w, _, sigma = linear_gaussian_parameters(vae)
    exact = 0.5 * torch.log(((w**2).sum(0) + sigma**2) / sigma**2).sum().item()  # H(z) - H(z | x)
    assert diag.mutual_information(vae, x) == pytest.approx(exact, abs=0.1)


def test_khat_is_low_for_the_exact_guide_and_high_for_a_bad_one():
    vae = _model_with_columns([2.0, 1.0, 1.0], sigma=0.3)
    x = _sample(vae, 60)
    good = diag.psis_khat(iwae_log_likelihood(vae, x, 500, return_weights=True)[1])
    assert (good < 0.5).all()
    with torch.no_grad():  # a guide ten times too narrow and off-centre
        enc = vae.encoder.net[0]
        enc.bias[3:] -= 3.0
        enc.bias[:3] += 0.5
    bad = diag.psis_khat(iwae_log_likelihood(vae, x, 500, return_weights=True)[1])
    assert (bad > 0.7).mean() > 0.9


def test_posterior_draws_as_inference_data():
    vae = _model_with_columns([2.0, 1.0])
    x = _sample(vae, 4)
    idata = diag.posterior_inference_data(vae, x, num_draws=4000)
    assert idata.posterior["z"].shape == (1, 4000, 4, 2)
    summary = az.summary(idata, kind="stats")
    assert len(summary) == 8
    assert torch.allclose(torch.tensor(idata.posterior["z"].mean(("chain", "draw")).values).float(), vae.encode(x),
                          atol=0.05)


def test_collapsed_model_is_reported():
    vae = _model_with_columns([0.0, 0.0])
    x = _sample(vae, 500)
    report, _ = ppvae.report.evaluate_model(vae, x, num_samples=20)
    assert report["active_units"]["value"] == 0
    assert any(w.startswith("posterior collapse") for w in report["warnings"])


def test_evaluate_cli_writes_the_report_and_figures(tmp_path, capsys):
    run = tmp_path / "run"
    train_spec(None, TINY + ["train.epochs=2", "model.latent_dim=2"], run_dir=run, progress=False)
    assert main(["evaluate", str(run), "-k", "50"]) == 0
    out = capsys.readouterr().out
    assert "log p(x), IWAE K=50" in out and "active units" in out and "PSIS k-hat > 0.7" in out
    report = json.loads((run / "report.json").read_text())
    assert report["num_examples"] == 128 and report["iwae_log_likelihood"]["num_samples"] == 50
    assert report["iwae_log_likelihood"]["value"] >= report["elbo"]["elbo"] - 1.0
    assert len(report["kl_per_dimension"]["value"]) == 2 and "how" in report["psis_khat"]
    # Bernoulli on grey-level digits: a score, not a code length, so no bits per dimension, and it says why.
    assert "bits_per_dim" not in report["iwae_log_likelihood"] and "not a code length" in out
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"traversals.png", "khat_histogram.png", "latent_scatter.png", "manifold.png"} <= figures
    assert set(report["figures"]) <= figures
    idata = az.from_netcdf(str(run / "posterior.nc"))
    assert idata.posterior["z"].shape[-2:] == (20, 2)


def test_exact_helpers_refuse_other_models():
    with pytest.raises(ValueError, match="exact log-likelihood needs a linear-Gaussian VAE"):
        linear_gaussian_log_likelihood(ppvae.VAE((D,), 2), torch.zeros(1, D))
    assert math.isfinite(ppca_mle(torch.randn(50, D), 2)[2])


def test_evaluation_is_seeded_and_leaves_the_random_state_and_training_mode_alone():
    vae = _model_with_columns([2.0, 0.5])
    x = _sample(vae, 50)
    vae = _linear_vae(2)  # an untrained guide: importance weights that vary with the draw
    vae.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    calls = {
        "elbo": lambda seed: ppvae.evaluate_elbo(vae, x, seed=seed)["elbo"],
        "iwae": lambda seed: iwae_log_likelihood(vae, x, 20, seed=seed).sum().item(),
        "kl per dim": lambda seed: diag.kl_per_dimension(vae, x, seed=seed, batch_size=7).sum().item(),
        "mutual information": lambda seed: diag.mutual_information(vae, x, seed=seed),
        "posterior draws": lambda seed: float(diag.posterior_inference_data(vae, x[:3], num_draws=5, seed=seed)
                                              .posterior["z"].sum()),
    }
    for name, f in calls.items():
        a, b, c = f(3), f(3), f(4)
        assert a == b, f"{name} is not reproducible for one seed: {a} vs {b}"
        if name != "kl per dim":  # analytic KL: no randomness
            assert a != c, f"{name} ignores its seed"
        assert torch.equal(torch.get_rng_state(), state), f"{name} changed the global random state"
        assert vae.training, f"{name} left the model in eval mode"

    from ppvae.traces import seeded_eval

    with pytest.raises(RuntimeError, match="boom"):
        with seeded_eval(0, "cpu", vae):
            assert not vae.training
            torch.randn(3)
            raise RuntimeError("boom")
    assert vae.training and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("latent_dim,max_examples,k", [(1, 100, 50), (2, 5, 10), (3, 2, 1)])
def test_evaluate_runs_at_the_edges(tmp_path, capsys, latent_dim, max_examples, k):
    """A 1-D latent, a handful of test examples, and K too small for PSIS still give a report and figures."""
    run = tmp_path / "run"
    train_spec(None, TINY + ["train.epochs=1", f"model.latent_dim={latent_dim}"], run_dir=run, progress=False)
    assert main(["evaluate", str(run), "-k", str(k), "--max-examples", str(max_examples)]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    assert report["num_examples"] == max_examples
    assert math.isfinite(report["iwae_log_likelihood"]["value"])
    psis = report["psis_khat"]
    if k < diag.MIN_PSIS_SAMPLES:
        assert psis["share_above_0.7"] is None and "needs K >= 21 importance samples; got K = " + str(k) in psis["how"]
        assert "not computed: needs K >= 21" in out and "khat_histogram.png" not in report["figures"]
    else:
        assert 0 <= psis["share_above_0.7"] <= 1 and "khat_histogram.png" in report["figures"]
    figures = {p.name for p in (run / "figures").iterdir()}
    assert set(report["figures"]) <= figures and "latent_scatter.png" in figures
    assert "interpolation_linear.png" in report["figures"]
    if max_examples == 2:
        from ppvae.evaluate.report import evaluate_run

        for bad in (1, 0, -98, 2.5):  # -98 once cut examples off the end instead of refusing
            with pytest.raises(ValueError, match=rf"max_examples .* must be an integer >= 2, got {bad}"):
                evaluate_run(run, max_examples=bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_bad_evaluation_batch_size_says_what_is_allowed(bad):
    """A negative batch size once gave an ELBO of 0 over no batches, and 0 a bare range() error."""
    vae = ppvae.VAE((1, 28, 28), latent_dim=2)
    x = torch.rand(10, 1, 28, 28)
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {bad}"):
        ppvae.evaluate_elbo(vae, x, batch_size=bad)
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {bad}"):
        iwae_log_likelihood(vae, x, num_samples=2, batch_size=bad)


def test_undefined_khat_is_left_out_of_the_summary_not_counted_as_bad(monkeypatch):
    """ArviZ gives k-hat = inf where it is undefined (e.g. all weights equal); that is not a failing guide."""
    from ppvae.evaluate.report import evaluate_model, summary

    x = _sample(_model_with_columns([2.0, 0.5]), 10)
    torch.manual_seed(0)
    vae = _linear_vae(2)  # an untrained guide, so the real k-hats are finite
    real, shown = diag.psis_khat, {}

    def some_undefined(lw):
        shown["khat"] = np.where(np.arange(lw.shape[0]) < 6, 0.1, real(lw))
        return np.where(np.arange(lw.shape[0]) < 6, np.inf, shown["khat"])

    monkeypatch.setattr(diag, "psis_khat", some_undefined)
    report, _ = evaluate_model(vae, x, num_samples=50, posterior_draws=10)
    k, finite = report["psis_khat"], shown["khat"][6:]
    assert np.isfinite(finite).all()
    assert k["undefined"] == 6 and k["median"] == pytest.approx(np.median(finite))
    assert k["share_above_0.7"] == pytest.approx((finite > 0.7).mean()) and k["max"] == pytest.approx(finite.max())
    json.dumps(report, allow_nan=False)  # standard JSON: no Infinity
    assert "6 undefined" in summary(report)
    monkeypatch.setattr(diag, "psis_khat", lambda lw: np.full(lw.shape[0], np.inf))
    report, _ = evaluate_model(vae, x, num_samples=50, posterior_draws=10)
    assert "undefined for all 10 examples" in summary(report) and "not computed" not in summary(report)


def test_manifold_uses_the_quantiles_of_the_prior_it_has():
    from ppvae.evaluate.report import latent_manifold

    torch.manual_seed(0)
    vae = ppvae.VAE((4,), latent_dim=2, prior={"name": "laplace", "scale": 3.0}, likelihood="gaussian",
                    decoder={"name": "mlp", "hidden": []})
    seen = []
    vae.decoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    latent_manifold(vae, 5)
    grid = seen[0]  # (25, 2): row-major, z1 from high to low, z0 from low to high
    laplace = torch.distributions.Laplace(0.0, 3.0).icdf(torch.linspace(0.05, 0.95, 5))
    torch.testing.assert_close(grid[:5, 0], laplace, atol=0.15, rtol=0)  # from 20,000 prior draws
    torch.testing.assert_close(grid[::5, 1], laplace.flip(0), atol=0.15, rtol=0)


def test_active_units_of_a_flow_guide_are_not_inflated_by_sampling_noise():
    """An IAF guide whose q(z | x) is the same for every x has no active unit, although the Monte Carlo mean
    of its draws varies across x by E[Var_q(z | x)] / num_draws, above the 0.01 threshold for a wide q."""
    latent, context = 3, 8
    encoder = torch.nn.Linear(D, 2 * latent + context)
    with torch.no_grad():
        encoder.weight.zero_()  # the same q(z | x) for every x: mean 0, scale softplus(8) ~ 8, same context
        encoder.bias.zero_()
        encoder.bias[latent:2 * latent] = 8.0
    vae = ppvae.VAE((D,), latent, encoder=encoder, guide={"name": "iaf", "context_dim": context},
                    likelihood="gaussian")
    x = torch.randn(400, D)
    with torch.no_grad():
        noise = vae.q.posterior(x[:1]).sample((4000,)).var(0).squeeze(0) / 1000  # what the MC mean adds
    assert (noise > 1.5 * diag.ACTIVE_THRESHOLD).all(), noise
    active, variance = diag.active_units(vae, x)
    assert active == 0 and variance.max() < diag.ACTIVE_THRESHOLD / 2, variance


def test_the_long_computations_draw_their_bars_on_stderr_and_none_without_progress(capsys):
    """Each function behind a long command draws a bar saying what it computes, with the stage's own bar inside
    (on stderr, never stdout), and nothing at all with progress=False, which the command line's --quiet passes."""
    from ppvae.apps.anomaly import anomaly_scores
    from ppvae.apps.text import text_metrics
    from ppvae.data.sequences import END, PAD
    from ppvae.evaluate.disentanglement import TableFactors, evaluate_codes
    from ppvae.models.sequence import SequenceLM

    vae = _model_with_columns([2.0, 1.0])
    x = _sample(vae, 60)
    source = TableFactors(x, torch.stack([torch.arange(60) % 2, torch.arange(60) % 3], 1))
    lm = SequenceLM((6,), [f"w{i}" for i in range(16)], representation="words", embed_dim=8, hidden=8)
    sentences = torch.tensor([[4, 5, END, PAD, PAD, PAD], [6, 7, 8, 9, END, PAD]])
    calls = {  # the bar's description, and what shows inside it
        ("ELBO", "example"): lambda progress: ppvae.evaluate_elbo(vae, x, progress=progress),
        ("IWAE log-likelihood, K=7", "60/60"): lambda progress: iwae_log_likelihood(vae, x, 7, progress=progress),
        ("active units", "example"): lambda progress: diag.active_units(vae, x, num_draws=10, progress=progress),
        ("KL per dimension", "example"): lambda progress: diag.kl_per_dimension(vae, x, progress=progress),
        ("evaluate", "IWAE log-likelihood, K=25"): lambda progress: ppvae.report.evaluate_model(
            vae, x, num_samples=25, posterior_draws=5, progress=progress),
        ("anomaly scores", "IWAE log-likelihood, K=5"): lambda progress: anomaly_scores(
            vae, x, scores=["reconstruction", "neg_elbo", "neg_iwae"], num_samples=5, progress=progress),
        ("disentanglement", "DCI boosted trees"): lambda progress: evaluate_codes(
            source, lambda v: v.double().numpy(), num_train=40, num_eval=20, num_votes=20, dci_train=40, dci_eval=20,
            batch_size=4, progress=progress),
        ("text metrics", "IWAE log-likelihood, K=3"): lambda progress: text_metrics(lm, sentences, num_samples=3,
                                                                                    progress=progress),
    }
    for (desc, inside), call in calls.items():
        call(False)
        assert capsys.readouterr() == ("", ""), desc
        call(True)
        out, err = capsys.readouterr()
        assert out == "" and f"{desc}: 100%" in err and inside in err, (desc, err)


def test_a_long_single_step_still_moves_its_stage_bar(monkeypatch, capsys):
    """One long call inside a stage (DCI's boosted trees, a chunk of importance samples) is not a silent stretch:
    the stage's bar redraws its elapsed time every TICK_SECONDS."""
    import time

    import ppvae.progress as progress

    monkeypatch.setattr(progress, "TICK_SECONDS", 0.1)
    with progress.Stages("work", 2, True) as stage:
        stage("a long step")
        time.sleep(0.8)
        stage("a short one")
    drawn = capsys.readouterr().err.count("a long step")
    assert drawn >= 5  # about one redraw per tick, not one per stage
    with progress.Stages("work", 1, False) as stage:
        stage("quiet")
        time.sleep(0.3)
    assert capsys.readouterr().err == ""
