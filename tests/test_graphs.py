"""The training step as one CUDA graph: the capture check and the graphed step's plumbing, on the CPU (the graph
itself is measured on a GPU by bench/gpu_check.sh)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.inference.graphs import EagerGraph, GraphedStep, capture_problems
from ppvae.inference.train import Trainer

THIS = __file__


def _lines(problems):
    return [(p.what.split(" (")[0].split(";")[0], p.where.split(" ")[0]) for p in problems]


def test_the_capture_check_names_each_operation_a_graph_cannot_hold_with_its_line():
    x = torch.randn(8, 3)

    def step():
        total = x.sum()
        if total > 0:                                            # an if on a tensor
            x.mul(2.0)
        _ = total.item()                                         # a host read
        _ = dist.Normal(x, 1.0).log_prob(x)                      # a number where a distribution takes a tensor
        _ = x[x > 0]                                             # a shape that depends on the data
        _ = x * 2.0 + x.new_ones(3)                              # fine: a scalar operand, a tensor from a tensor

    with pyro.validation_enabled(False):
        problems = capture_problems(step)
    line = step.__code__.co_firstlineno
    assert _lines(problems) == [
        ("a tensor read on the host", f"{THIS}:{line + 2}"),
        ("a tensor read on the host", f"{THIS}:{line + 4}"),
        ("a tensor made from Python numbers", f"{THIS}:{line + 5}"),
        ("indexing with a boolean mask", f"{THIS}:{line + 6}"),
    ], problems


def _trainer(model, data, overrides=()):
    spec = ppvae.load_spec(None, ["device=cpu", "train.batch_size=64", "train.figures=false", *overrides])
    return Trainer(model, data, spec, progress=False)


@pytest.fixture(scope="module")
def data():
    return ppvae.load_dataset(limit_train=300, limit_test=64)


def test_the_stock_families_and_pyros_vae_example_are_capture_safe(data):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "pyro_style"))
    from vae import VAE as PyroVAE

    for model, objective in ((ppvae.VAE(data.event_shape, 4), "Trace_ELBO"),
                             (ppvae.VAE(data.event_shape, 4), "TraceMeanField_ELBO"),
                             (ppvae.VAE(data.event_shape, 4), "IWAE"),
                             (ppvae.VAE(data.event_shape, 4, likelihood="gaussian", prior="vamp"), "Trace_ELBO"),
                             (ppvae.CVAE(data.event_shape, 10, 4), "Trace_ELBO"),
                             (PyroVAE(z_dim=4, hidden_dim=32), "Trace_ELBO")):
        trainer = _trainer(model, data, [f"objective.name={objective}"])
        batch = {k: v[:64] for k, v in data.batch("train").items()}
        with pyro.validation_enabled(False):
            problems = capture_problems(lambda: trainer.loss(batch, 0.0).backward())
        assert problems == [], (type(model).__name__, objective, problems)


def test_a_program_that_is_not_capture_safe_is_named_and_graph_on_is_refused_on_the_cpu(data, capsys):
    assert main(["train", "--quiet", "--set", "device=cpu", "--set", "train.graph=on", "--set", "train.epochs=1",
                 "--set", "data.limit_train=64", "--run-dir", "/nonexistent/x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ppvae train: error: train.graph = \"on\": CUDA graphs need a CUDA device; this run trains on cpu; set "
        "train.graph = \"auto\" to train it eagerly")
    with pytest.raises(ValueError, match=r"train.graph must be one of auto, on, off, got 'sometimes'"):
        _trainer(ppvae.VAE(data.event_shape, 4), data, ["train.graph=sometimes"])


@pytest.mark.parametrize("beta", ["constant", "linear"])
def test_the_graphed_step_trains_what_eager_steps_train(data, beta):
    """The graphed step's plumbing (static batch buffers, beta as a device tensor filled each step, the warm-up
    that trains nothing, the short last batch eager) run without a graph equals eager training, bit for bit."""
    overrides = [f"beta.name={beta}", "train.epochs=2", "model.latent_dim=4", "encoder.hidden=[32]",
                 "decoder.hidden=[32]", "train.validate=false"]
    runs = {}
    for graphed in (False, True):
        torch.manual_seed(0)
        model = ppvae.VAE(data.event_shape, 4, encoder={"name": "mlp", "hidden": [32]},
                          decoder={"name": "mlp", "hidden": [32]})
        trainer = _trainer(model, data, overrides)
        if graphed:
            trainer.graph = GraphedStep(trainer, graph=EagerGraph, side_stream=_NoStream)
        runs[graphed] = (trainer.fit(), {k: v.clone() for k, v in model.state_dict().items()}, trainer)
    eager, graphed = runs[False], runs[True]
    assert len(graphed[2].graph.graphs) == 1  # one batch size captured; the short last batch (300 = 4 x 64 + 44) eager
    assert [m["train_loss"] for m in eager[0]] == [m["train_loss"] for m in graphed[0]]
    for k, v in eager[1].items():
        assert torch.equal(v, graphed[1][k]), k


class _NoStream:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_where_a_graph_could_run_a_program_that_is_not_capture_safe_trains_eagerly_or_is_refused(data, monkeypatch):
    """As on a GPU: the run allows a graph (here pretended), so the program's first step is watched."""
    from pathlib import Path

    import ppvae.inference.train as train_module
    from ppvae.registry import load_object

    monkeypatch.setattr(train_module, "why_not_graphed", lambda *args: None)
    user = Path(__file__).parent / "user_models.py"
    cls = load_object(f"{user}:HierarchicalVAE")
    source = user.read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "dist.Normal(x.new_zeros(self.z2_dim), 1.0)" in text)
    message = (rf"HierarchicalVAE's step cannot be captured as a CUDA graph: a tensor made from Python numbers .* at "
               rf"{user}:{line} \(z2 = pyro.sample")
    with pytest.warns(UserWarning, match=message + r".*; training eagerly"):
        trainer = _trainer(cls(data.event_shape), data)
    assert trainer.graph is None
    with pytest.raises(ValueError, match=r"train.graph = \"on\": " + message):
        _trainer(cls(data.event_shape), data, ["train.graph=on"])
    # a capture-safe program gets the graphed step
    assert isinstance(_trainer(ppvae.VAE(data.event_shape, 4), data).graph, GraphedStep)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh runs it where one is)")
def test_on_cuda_graphed_training_takes_the_steps_eager_training_takes():
    data = ppvae.load_dataset(limit_train=1000, limit_test=200)
    runs = {}
    for graph in ("on", "off"):
        spec = ppvae.load_spec(None, ["device=cuda", "train.batch_size=128", "train.epochs=2", "train.figures=false",
                                      "beta.name=linear", "model.latent_dim=8", f"train.graph={graph}"])
        torch.manual_seed(0)
        model = ppvae.build_model(spec, data.event_shape)
        trainer = Trainer(model, data, spec, progress=False)
        runs[graph] = (trainer.fit(), trainer)
    assert runs["on"][1].graph is not None and runs["off"][1].graph is None
    for a, b in zip(runs["on"][0], runs["off"][0]):
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], abs=0.05), (a["val_elbo"], b["val_elbo"])
