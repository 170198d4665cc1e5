"""The model and guide as Pyro programs: sites, shapes, the beta identity, and learning on real data."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

import ppvae
from ppvae import VAE
from ppvae.inference.objectives import KLScale


def _traces(vae, x):
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    return model_tr, guide_tr


@pytest.mark.parametrize("nets", [("mlp", "mlp"), ("conv", "conv")])
def test_model_and_guide_sites_match(nets):
    vae = VAE((1, 28, 28), latent_dim=5, encoder=nets[0], decoder=nets[1])
    x = torch.rand(7, 1, 28, 28)
    model_tr, guide_tr = _traces(vae, x)
    def latents(tr):
        return [n for n, s in tr.nodes.items()
                if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]

    model_latents, guide_latents = latents(model_tr), latents(guide_tr)
    assert model_latents == guide_latents == ["z"]
    assert model_tr.nodes["x"]["is_observed"]
    assert model_tr.nodes["z"]["value"] is guide_tr.nodes["z"]["value"]
    assert model_tr.nodes["z"]["value"].shape == (7, 5)
    assert model_tr.nodes["z"]["fn"].event_shape == guide_tr.nodes["z"]["fn"].event_shape == (5,)
    assert model_tr.nodes["z"]["fn"].batch_shape == guide_tr.nodes["z"]["fn"].batch_shape == (7,)
    assert model_tr.nodes["x"]["fn"].event_shape == (1, 28, 28)
    model_tr.compute_log_prob()
    assert model_tr.nodes["x"]["log_prob"].shape == (7,)  # one number per example
    # the plate is the data plate, at dim -1
    assert [f.name for f in model_tr.nodes["z"]["cond_indep_stack"]] == ["data"]


def test_vectorized_particles_shapes():
    vae = VAE((64,), latent_dim=3)
    x = torch.rand(5, 64)
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    assert loss.shape == () and torch.isfinite(loss)


def _hand_elbo(vae, x, beta, seed, analytic):
    """E_q[log p(x|z)] - beta * KL computed directly from the components, with the same z draw."""
    torch.manual_seed(seed)
    q = vae.q.posterior(x)
    z = q.rsample()
    p = vae.prior(x.shape[0])
    recon = vae.likelihood(vae.decoder(z)).log_prob(x)
    kl = torch.distributions.kl_divergence(q, p) if analytic else q.log_prob(z) - p.log_prob(z)
    return (recon - beta * kl).sum()


@pytest.mark.parametrize("beta", [0.0, 0.25, 1.0, 4.0])
@pytest.mark.parametrize("elbo_cls,analytic", [(Trace_ELBO, False), (TraceMeanField_ELBO, True)])
def test_beta_scales_the_kl_exactly(beta, elbo_cls, analytic):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, encoder={"name": "mlp", "hidden": [16]},
              decoder={"name": "mlp", "hidden": [16]})
    x = torch.rand(11, 1, 8, 8)
    torch.manual_seed(123)
    scale = KLScale(beta)
    loss = elbo_cls(max_plate_nesting=1).differentiable_loss(scale(vae.model), scale(vae.guide), x)
    expected = -_hand_elbo(vae, x, beta, 123, analytic)
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-3), (loss.item(), expected.item())
    # and beta really changes the objective: the KL part is not zero
    if beta != 1.0:
        other = -_hand_elbo(vae, x, 1.0, 123, analytic)
        assert abs(other.item() - expected.item()) > 1e-3


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=4)
    x = torch.rand(3, 1, 8, 8)
    q, p = vae.q.posterior(x), vae.prior(3)
    z = q.rsample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    exact = torch.distributions.kl_divergence(q, p)
    se = (q.log_prob(z) - p.log_prob(z)).std(0) / math.sqrt(20000)
    assert torch.all((mc - exact).abs() < 4 * se + 1e-4)


def test_generate_reconstruct_shapes_and_range():
    vae = VAE((1, 28, 28), latent_dim=6)
    x = torch.rand(4, 1, 28, 28)
    for out in (vae.generate(9), vae.reconstruct(x)):
        assert out.shape[1:] == (1, 28, 28)
        assert 0.0 <= out.min() and out.max() <= 1.0  # Bernoulli means
    assert vae.encode(x).shape == (4, 6)


def test_plain_pyro_svi_trains_the_same_programs(small_mnist):
    """The model and guide are ordinary Pyro programs: pyro.infer.SVI with pyro.optim trains them too."""
    torch.manual_seed(0)
    vae = VAE(small_mnist.event_shape, latent_dim=8)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    x = small_mnist.train[:128]
    first = svi.step(x) / 128
    for _ in range(150):
        last = svi.step(x) / 128
    assert last < first - 200, (first, last)


def test_loss_falls_clearly_on_real_data(small_mnist):
    torch.manual_seed(0)
    vae = VAE(small_mnist.event_shape, latent_dim=8)
    before = ppvae.evaluate_elbo(vae, small_mnist.test)["elbo"]
    run = ppvae.train(vae, small_mnist, epochs=40, batch_size=64, device="cpu", progress=False)  # 320 steps
    after = run.metrics[-1]["val_elbo"]
    # an untrained decoder scores about -544 nats (784 * log 2); 320 steps must learn a lot more than that
    assert before < -500
    assert after > -200, (before, after)
    elbos = [m["val_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 50
    assert all(math.isfinite(m["train_loss"]) for m in run.metrics)


def test_gaussian_likelihood_and_conv_nets_learn(small_mnist):
    torch.manual_seed(0)
    vae = VAE(small_mnist.event_shape, latent_dim=8, encoder="conv", decoder="conv",
              likelihood={"name": "gaussian", "scale": 0.3})
    run = ppvae.train(vae, small_mnist, epochs=4, batch_size=64, device="cpu", progress=False,
                      objective="TraceMeanField_ELBO")
    elbos = [m["val_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] and all(math.isfinite(e) for e in elbos)


@pytest.mark.parametrize("guide,width", [("normal", 4), ({"name": "iaf", "context_dim": 8}, 12)])
def test_a_user_encoder_of_the_wrong_width_is_named(guide, width):
    vae = ppvae.VAE((6,), latent_dim=2, encoder=torch.nn.Linear(6, 3), guide=guide, likelihood="gaussian")
    with pytest.raises(ValueError, match=rf"needs an encoder with .* = {width} outputs.*but it gave 3"):
        vae.encode(torch.randn(5, 6))
    vae = ppvae.VAE((6,), latent_dim=2, encoder=torch.nn.Linear(6, width), guide=guide, likelihood="gaussian")
    assert vae.encode(torch.randn(5, 6)).shape == (5, 2)  # the right width is taken as it is


def test_net_options_are_checked_and_shape_errors_name_what_has_the_shape():
    with pytest.raises(ValueError, match=r"unknown activation 'relux'; choose one of: elu, gelu, relu"):
        ppvae.VAE((6,), 2, encoder={"name": "mlp", "hidden": [], "activation": "relux"})  # no layer uses it
    with pytest.raises(ValueError, match=r"the conv decoder needs images .* but its output \(the data's shape, the "
                                         r"likelihood's parameters per pixel stacked on the channels\) has shape "
                                         r"\(256, 3, 30\); use decoder 'mlp'"):
        ppvae.VAE((1, 3, 30), 4, decoder="conv", likelihood="categorical")
    with pytest.raises(ValueError, match=r"but the data has event shape \(1, 3, 30\); use encoder 'mlp'"):
        ppvae.VAE((1, 3, 30), 4, encoder="conv")
    assert ppvae.VAE((1, 30, 30), 4, encoder="conv", decoder="conv")  # any size from 4 x 4


def test_a_new_family_is_one_file_the_ladder_vae_trains_evaluates_and_samples(tmp_path, capsys):
    """models/ladder.py registers itself: the CLI, the report and every verb take it with nothing else naming it."""
    from ppvae.cli import main

    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", "model.name=ladder_vae", "--set",
            "model.hidden=64", "--set", "train.epochs=3", "--set", "data.limit_train=512", "--set",
            "data.limit_test=128", "--set", "device=cpu", "--set", "train.figures=false"]
    assert main(args) == 0
    metrics = ppvae.load_run(tmp_path / "run").metrics
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"]
    assert metrics[-1]["val_kl_z1"] > 0 and metrics[-1]["val_kl_z2"] > 0  # both levels carry information
    assert main(["evaluate", str(tmp_path / "run"), "-k", "20", "--no-figures"]) == 0
    assert main(["sample", str(tmp_path / "run")]) == 0 and (tmp_path / "run" / "figures" / "samples.png").is_file()
