"""beta-TCVAE: the KL decomposition's estimators against exact answers, and training through the CLI and Python."""

import csv
import math

import pytest
import torch
from conftest import TINY

import ppvae
from ppvae import VAE
from ppvae.cli import main
from ppvae.inference.decomposition import aggregate_log_densities, kl_decomposition, log_weights
from ppvae.inference.objectives import TCVAE
from ppvae.inference.train import Trainer
from ppvae.traces import elbo_terms


@pytest.mark.parametrize("prior", ["normal", "laplace", "learned_normal"])
def test_the_three_terms_sum_to_the_dimension_wise_kl(prior):
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3, prior=prior)
    x = torch.rand(7, 1, 4, 4).round()
    torch.manual_seed(1)
    terms = kl_decomposition(vae.model, vae.guide, x, dataset_size=100)
    torch.manual_seed(1)  # the same draws: the guide runs first in both
    recon, per_dim = elbo_terms(vae.model, vae.guide, x, analytic=False, per_dim=True)
    total = terms["mi"] + terms["tc"] + terms["dim_kl"]
    assert torch.allclose(total, per_dim.sum(-1), atol=1e-5)
    assert torch.allclose(terms["kl"], per_dim.sum(-1), atol=1e-5)
    assert torch.allclose(terms["recon"], recon, atol=1e-4)


def test_scoring_in_blocks_of_draws_gives_the_terms_of_one_block(monkeypatch):
    """Every draw is scored under every posterior in blocks of as many rows as BLOCK_BYTES holds: one row a block
    and all rows in one block give the same terms (the per-row estimates do not depend on the block)."""
    from ppvae.inference import decomposition

    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3)
    x = torch.rand(9, 1, 4, 4).round()
    out = {}
    for name, size in (("one row", 1), ("three rows", 3 * 9 * 3 * 4), ("one block", 2**30)):
        monkeypatch.setattr(decomposition, "BLOCK_BYTES", size)
        torch.manual_seed(1)
        out[name] = kl_decomposition(vae.model, vae.guide, x, dataset_size=100, estimator="mss")
    for name in ("one row", "three rows"):
        for k in ("mi", "tc", "dim_kl"):
            assert torch.allclose(out[name][k], out["one block"][k], atol=1e-5), (name, k)


def _random_posteriors(m=5, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.distributions.Normal(torch.randn(m, d, generator=g), 0.5 + torch.rand(m, d, generator=g))
    z = q.sample()
    return q, z, q.log_prob(z.unsqueeze(1))  # [i, k, j] = log q(z_ij | x_k)


def test_minibatch_weighted_sampling_is_the_papers_formula():
    q, z, lq = _random_posteriors()
    m, n = z.shape[0], 50
    log_qz, log_prod = aggregate_log_densities(lq, n, "mws")
    for i in range(m):  # Chen et al. (2018), eq. S6: log (1 / (N M)) sum_k q(z_i | x_k)
        dens = sum(math.exp(q.log_prob(z[i])[k].sum()) for k in range(m))
        assert log_qz[i].item() == pytest.approx(math.log(dens / (n * m)), rel=1e-5)
        prod = sum(math.log(sum(math.exp(q.log_prob(z[i])[k, j]) for k in range(m)) / (n * m)) for j in range(3))
        assert log_prod[i].item() == pytest.approx(prod, rel=1e-5)


def test_stratified_sampling_is_exact_when_the_minibatch_is_the_data_set():
    q, z, lq = _random_posteriors(m=6)
    log_qz, log_prod = aggregate_log_densities(lq, 6, "mss")
    exact = torch.logsumexp(lq.sum(-1), 1) - math.log(6)              # log (1/N) sum_n q(z_i | x_n)
    exact_prod = (torch.logsumexp(lq, 1) - math.log(6)).sum(-1)
    assert torch.allclose(log_qz, exact, atol=1e-6) and torch.allclose(log_prod, exact_prod, atol=1e-6)
    w = log_weights(6, 100, "mss").exp()
    assert torch.allclose(w.diagonal(), torch.full((6,), 0.01))
    assert torch.allclose(w.sum(1), torch.ones(6))  # one weight 1/N, five (N-1)/(N(M-1)): they sum to one


def test_identical_posteriors_have_no_mutual_information_or_total_correlation():
    """Every q(z | x_k) the same factorized Gaussian: q(z) = q(z | x), so MI = TC = 0 exactly. Stratified sampling
    gets that; minibatch-weighted sampling is off by the constants of its known bias (MI log N, TC (D-1) log N)."""
    m, d, n = 8, 3, 1000
    q = torch.distributions.Normal(torch.zeros(m, d) + 0.3, torch.ones(m, d) * 0.7)
    z = q.sample()
    lq = q.log_prob(z.unsqueeze(1))
    log_qzx = q.log_prob(z).sum(-1)
    qz, prod = aggregate_log_densities(lq, n, "mss")
    assert torch.allclose(log_qzx - qz, torch.zeros(m), atol=1e-5)
    assert torch.allclose(qz - prod, torch.zeros(m), atol=1e-5)
    qz, prod = aggregate_log_densities(lq, n, "mws")
    assert torch.allclose(log_qzx - qz, torch.full((m,), math.log(n)), atol=1e-4)
    assert torch.allclose(qz - prod, torch.full((m,), (d - 1) * math.log(n)), atol=1e-4)


def test_the_loss_weights_each_term():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=2)
    x = torch.rand(5, 1, 4, 4).round()
    rule = TCVAE(alpha=2.0, beta=6.0, gamma=0.5, dataset_size=40)
    torch.manual_seed(3)
    t = kl_decomposition(vae.model, vae.guide, x, 40)
    expected = -(t["recon"] - 2.0 * t["mi"] - 6.0 * t["tc"] - 0.5 * t["dim_kl"]).sum()
    assert rule.loss_from_terms(t, 0.0, 1).item() == pytest.approx(expected.item())
    ones = TCVAE(alpha=1.0, beta=1.0, gamma=1.0, dataset_size=40)
    assert ones.loss_from_terms(t, 0.0, 1).item() == pytest.approx(-(t["recon"] - t["kl"]).sum().item(), rel=1e-5)


def test_beta_tcvae_trains_from_the_cli_and_logs_the_decomposition(tmp_path, capsys):
    run = tmp_path / "tc"
    sets = ["data.name=dsprites", "data.n=600", "beta.name=tcvae", "beta.beta=6", "train.epochs=3",
            "model.latent_dim=4", "encoder.hidden=[64]", "decoder.hidden=[64]", "device=cpu"]
    assert main(["train", *[a for s in sets for a in ("--set", s)], "--run-dir", str(run), "--quiet"]) == 0
    spec = ppvae.load_spec(run / "spec.toml")
    assert spec["beta"] == {"name": "tcvae", "alpha": 1.0, "beta": 6.0, "gamma": 1.0, "estimator": "mws",
                            "dataset_size": 432}  # the training set's size (480 less 48 validation rows), recorded
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"])
    for r in rows:  # the three logged terms add up to (about) the analytic test KL
        parts = float(r["val_mi"]) + float(r["val_tc"]) + float(r["val_dim_kl"])
        assert abs(parts - float(r["val_kl"])) < 0.15 * float(r["val_kl"]) + 0.5
    assert (run / "figures" / "kl_decomposition.png").stat().st_size > 5000
    assert main(["train", "--resume", str(run), "--set", "train.epochs=4", "--quiet"]) == 0  # resumes as trained


def test_penalising_total_correlation_lowers_it(small_mnist):
    """The same model, seed and data with the TC weight at 1 (the ELBO) and at 50: the heavily weighted run ends
    with the lower total correlation (logged with the stratified estimator)."""
    tcs = {}
    for beta in (1.0, 50.0):
        spec = ppvae.load_spec(None, [*TINY, "model.latent_dim=6", "beta.name=tcvae", f"beta.beta={beta}",
                                      "train.epochs=6", "train.figures=false"])
        vae = ppvae.build_model(spec, small_mnist.event_shape)
        torch.manual_seed(0)
        tcs[beta] = Trainer(vae, small_mnist, spec, progress=False).fit()[-1]["val_tc"]
    assert tcs[50.0] < tcs[1.0]


def test_beta_tcvae_in_python_on_any_factorized_prior(small_mnist):
    vae = VAE(small_mnist.event_shape, latent_dim=4, prior="laplace", encoder={"name": "mlp", "hidden": [64]},
              decoder={"name": "mlp", "hidden": [64]})
    run = ppvae.train(vae, small_mnist, epochs=2, beta=TCVAE(beta=4.0), device="cpu", progress=False, figures=False)
    assert run.spec["beta"]["dataset_size"] == len(small_mnist.train)
    assert run.metrics[-1]["val_tc"] == run.metrics[-1]["val_tc"]  # logged, finite
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"] - 1.0


def test_a_kl_rule_built_in_python_is_accepted_as_the_objective_too(small_mnist):
    """objective=TCVAE(...) once failed with "spec section [objective] needs a 'name'" where beta=TCVAE(...) worked."""
    def fit(**how):
        torch.manual_seed(0)
        vae = VAE(small_mnist.event_shape, latent_dim=4, encoder={"name": "mlp", "hidden": [32]},
                  decoder={"name": "mlp", "hidden": [32]})
        return ppvae.train(vae, small_mnist, epochs=1, device="cpu", progress=False, figures=False, **how)

    by_beta, by_objective = fit(beta=TCVAE(beta=4.0)), fit(objective=TCVAE(beta=4.0))
    assert by_objective.spec["objective"]["name"] == "tcvae" and by_objective.spec["objective"]["beta"] == 4.0
    assert by_objective.metrics[-1]["val_elbo"] == by_beta.metrics[-1]["val_elbo"]  # the same training
    assert by_objective.metrics[-1]["val_tc"] == by_beta.metrics[-1]["val_tc"]


def test_beta_tcvae_refuses_programs_it_cannot_decompose(small_mnist):
    for overrides, message in (
        (["guide.name=iaf"], "beta 'tcvae' cannot train this model: a KL per latent dimension needs a prior and guide "
                             "that factorize"),
        (["prior.name=mixture"], "beta 'tcvae' cannot train this model: a KL per latent dimension needs a prior"),
        (["objective.name=IWAE"], "beta 'tcvae' rewrites the ELBO's KL term, so it needs objective Trace_ELBO"),
    ):
        spec = ppvae.load_spec(None, [*TINY, "beta.name=tcvae", *overrides])
        vae = ppvae.build_model(spec, small_mnist.event_shape)
        with pytest.raises(ValueError, match=message):
            Trainer(vae, small_mnist, spec, progress=False)


@pytest.mark.parametrize("options,message", [
    ({"estimator": "exact"}, r"estimator must be one of mws, mss"),
    ({"beta": -1}, r"beta beta must be >= 0, got -1"),
    ({"dataset_size": 2.5}, r"beta dataset_size \(0: the training set's size\) must be an integer >= 0"),
])
def test_bad_tcvae_options(options, message):
    with pytest.raises(ValueError, match=message):
        TCVAE(**options)


def test_the_data_set_must_be_at_least_the_minibatch():
    with pytest.raises(ValueError, match=r"the data set size \(10\) must be at least the minibatch size \(16\)"):
        log_weights(16, 10, "mws")
