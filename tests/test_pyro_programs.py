"""Pyro's own programs as they are: four VAE-family programs written the way Pyro's examples write them
(``tests/pyro_style/``: plain ``nn.Module`` classes, ``model(x)`` / ``model(xs, ys=None)`` / the DMM's
``model(mini_batch, ...)``, their own plate and site names and constructors) train from the command line by
path, and every verb works on their run directories from another folder, with nothing in them changed."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.evaluate import iwae_log_likelihood
from ppvae.inference.run import load_run

STYLE = Path(__file__).resolve().parent / "pyro_style"
SMALL = ["data.limit_train=256", "data.limit_test=64", "train.batch_size=64", "device=cpu"]


def _train(run, options, capsys=None):
    args = ["train", "--quiet", "--run-dir", str(run)]
    for o in [*SMALL, *options]:
        args += ["--set", o]
    code = main(args)
    err = capsys.readouterr().err if capsys is not None else ""
    assert code == 0, err
    return json.loads(json.dumps(ppvae.load_run(run).metrics))


def _verbs_from_elsewhere(run, tmp_path, monkeypatch, capsys, k=25):
    """evaluate (ELBO and IWAE), sample, reconstruct and interpolate a run directory from another folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(run), "-k", str(k)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for verb in ("sample", "reconstruct"):
        assert main([verb, str(run)]) == 0, capsys.readouterr().err
    assert (run / "figures" / "samples.png").is_file() and (run / "figures" / "reconstructions.png").is_file()
    return out, json.loads((run / "report.json").read_text())


VAE_OPTIONS = [f"model.name={STYLE}/vae.py:VAE", "model.z_dim=4", "model.hidden_dim=64"]


def test_pyros_vae_trains_by_path_and_every_verb_and_resume_work_from_another_folder(tmp_path, monkeypatch, capsys):
    metrics = _train(tmp_path / "run", [*VAE_OPTIONS, "train.epochs=3"], capsys)
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"] + 10  # it learns on real digits
    out, report = _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys)
    # the site names say what the log-likelihood is of, and Pyro's ELBO agrees with ppvae's per-site terms
    assert "log p(obs), IWAE K=25" in out and report["iwae_log_likelihood"]["of"] == "log p(obs)"
    assert set(report["elbo"]["recon_sites"]) == {"obs"} and set(report["elbo"]["kl_sites"]) == {"latent"}
    assert report["iwae_log_likelihood"]["value"] > report["elbo"]["elbo"] - 1.0
    assert {"samples.png", "reconstructions.png", "interpolation_linear.png", "traversals.png",
            "latent_scatter.png"} <= set(report["figures"]) and report["figures_skipped"] == {}
    assert main(["interpolate", str(tmp_path / "run"), "--method", "spherical"]) == 0
    # resume from another folder continues exactly as one uninterrupted run of the same seed
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.epochs=4", "--quiet"]) == 0
    straight = _train(tmp_path / "straight", [*VAE_OPTIONS, "train.epochs=4"])
    resumed = ppvae.load_run(tmp_path / "run").metrics
    assert [m["val_elbo"] for m in resumed] == [m["val_elbo"] for m in straight]


def test_pyros_vae_trained_in_python_evaluates_from_the_cli_and_an_unstored_argument_names_its_fix(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(STYLE / "vae.py", tmp_path / "my_vae.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_vae import VAE

    data = ppvae.load_dataset(limit_train=256, limit_test=64)
    torch.manual_seed(0)
    run = ppvae.train(VAE(z_dim=4), data, epochs=1, batch_size=64, device="cpu", progress=False, figures=False,
                      run_dir="runs/python")
    # recorded by file, with its constructor's arguments read back (z_dim stored, the rest at their defaults)
    assert run.spec["model"] == {"name": f"{tmp_path / 'my_vae.py'}:VAE", "z_dim": 4, "hidden_dim": 400,
                                 "use_cuda": False}
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert main(["evaluate", str(tmp_path / "runs/python"), "-k", "5", "--no-figures"]) == 0
    assert main(["sample", str(tmp_path / "runs/python")]) == 0
    # hidden_dim is not stored on the object: a rebuild at its default would be another network, named with its fix
    with pytest.warns(UserWarning, match=r"will not be able to rebuild.*parameter \('encoder.hidden.weight', \[32, "
                                         r"784\]\) was trained.*does not store 'hidden_dim'.*--set "
                                         r"model.hidden_dim=\.\.\."):
        ppvae.train(VAE(z_dim=4, hidden_dim=32), data, epochs=1, batch_size=64, device="cpu", progress=False,
                    figures=False, run_dir=tmp_path / "runs/narrow")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "runs/narrow")]) == 2
    assert "cannot be rebuilt exactly" in capsys.readouterr().err


CVAE_OPTIONS = [f"model.name={STYLE}/cvae.py:CVAE", "model.z_dim=4", "model.hidden_1=64", "model.hidden_2=64",
                f'model.pre_trained_baseline_net={{name="{STYLE}/baseline.py:BaselineNet", hidden_1=32, hidden_2=32}}',
                f"data.transform={STYLE}/quadrants.py:one_quadrant"]


def test_pyros_cvae_with_its_baseline_network_and_input_half_trains_by_path(tmp_path, monkeypatch, capsys):
    # with no options its constructor's required arguments are named, in one line
    assert main(["train", "--quiet", "--run-dir", str(tmp_path / "bare"), "--set", CVAE_OPTIONS[0], "--set",
                 "device=cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ppvae train: error: model '{STYLE}/cvae.py:CVAE' needs constructor arguments z_dim, hidden_1, hidden_2, "
        f"pre_trained_baseline_net; give them: --set model.z_dim=... --set model.hidden_1=... --set "
        f"model.hidden_2=... --set model.pre_trained_baseline_net=... (a module as a table naming its class, e.g. "
        f'model.pre_trained_baseline_net={{name="file.py:Net", ...}})')
    metrics = _train(tmp_path / "run", [*CVAE_OPTIONS, "train.epochs=3"], capsys)
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"]
    out, report = _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys, k=5)
    assert "log p(y | xs), IWAE K=5" in out  # the output given the input half, named by the program's own names
    # the pre-trained network is rebuilt from its table, and its weights come from the checkpoint
    model = load_run(tmp_path / "run").model
    assert type(model.baseline_net).__name__ == "BaselineNet" and model.baseline_net.layers[0].out_features == 32
    # sampling predicts the hidden quadrants from the test inputs (a deterministic site of the full image)
    data = ppvae.load_dataset(limit_train=256, limit_test=64)
    p = ppvae.program(model).attach_data(data)
    torch.manual_seed(0)
    images = p.generate(8, context=data.batch("test"))
    assert images.shape == (8, 1, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1


SS_OPTIONS = [f"model.name={STYLE}/ss_vae.py:SSVAE", "model.z_dim=8", "model.hidden_layers=[64]",
              "model.config_enum=parallel", "model.aux_loss_multiplier=46", 'data.transform=["flatten", "onehot"]',
              "data.labeled=100", "objective.name=TraceEnum_ELBO", "objective.enumerate=parallel",
              'losses=[{model="model_classify", guide="guide_classify"}]', "train.labeled_batches=alternate"]


def test_pyros_ss_vae_with_its_second_loss_and_alternating_labelled_batches(tmp_path, monkeypatch, capsys):
    # mixed batches would show it every row's label: refused in one line, naming the way that works
    assert main(["train", "--quiet", "--run-dir", str(tmp_path / "rows"),
                 *sum((["--set", o] for o in [*SMALL, *SS_OPTIONS[:-1], "train.labeled_per_batch=16"]), [])]) == 2
    assert "set train.labeled_batches = \"alternate\"" in capsys.readouterr().err
    metrics = _train(tmp_path / "run", [*SS_OPTIONS, "train.epochs=4", "data.limit_train=1000"], capsys)
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"]
    out, report = _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys, k=5)
    # the test labels are hidden from it (a test split marks none as seen): log p(x), y summed by its guide
    assert "log p(x), IWAE K=5" in out and set(report["elbo"]["kl_sites"]) == {"z", "y"}
    # its own classifier is scored, and the classification loss taught it from 100 labels
    assert report["classification"]["accuracy"] > 0.3
    assert main(["sample", str(tmp_path / "run"), "--label", "3"]) == 0
    assert (tmp_path / "run" / "figures" / "samples_class3.png").is_file()
    assert "class_grid.png" in report["figures"]


def test_the_second_loss_is_what_teaches_the_ss_vaes_classifier(tmp_path):
    common = [*SMALL, *SS_OPTIONS[:-2], "train.labeled_batches=alternate", "train.epochs=4", "data.limit_train=1000",
              "train.figures=false"]
    with_loss = ppvae.train_spec(None, [*common, SS_OPTIONS[-2]], run_dir=tmp_path / "a", progress=False)
    without = ppvae.train_spec(None, common, run_dir=tmp_path / "b", progress=False)
    accuracy = {}
    for name, run in (("with", with_loss), ("without", without)):
        batch = run.data.batch("test")
        probs = ppvae.program(run.model).classify(batch)
        accuracy[name] = float((probs.argmax(-1) == batch["y"]).float().mean())
    assert accuracy["with"] > accuracy["without"] + 0.1, accuracy


DMM_OPTIONS = [f"model.name={STYLE}/dmm.py:DMM", "model.input_dim=8", "model.z_dim=4", "model.emission_dim=16",
               "model.transition_dim=16", "model.rnn_dim=16", f"data.name={STYLE}/sequences.py:load",
               f"data.transform={STYLE}/sequences.py:mini_batch", "train.batch_size=32", "device=cpu"]


def test_pyros_dmm_with_its_sequence_transform_and_own_plate(tmp_path, monkeypatch, capsys):
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run")]
    for o in [*DMM_OPTIONS, "train.epochs=3"]:
        args += ["--set", o]
    assert main(args) == 0, capsys.readouterr().err
    metrics = load_run(tmp_path / "run").metrics
    assert metrics[-1]["val_elbo"] > metrics[0]["val_elbo"]
    out, report = _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys, k=5)
    # its plate is "z_minibatch": IWAE per example works, and the sites name the evidence
    assert re.search(r"log p\(obs_x_1\.\.12 \| .*mini_batch_mask.*\), IWAE K=5", out)
    # per-example figures come back in the data's order although the transform sorts rows by length: longer
    # sequences have more notes to explain, so -log p(x) rises with the length
    run = load_run(tmp_path / "run")
    batch = run.data.batch("test")
    nll = -iwae_log_likelihood(run.model, batch, 5).numpy()
    assert np.corrcoef(nll, batch["lengths"].numpy())[0, 1] > 0.8
    shuffled = torch.randperm(len(nll), generator=torch.Generator().manual_seed(1))
    nll_shuffled = -iwae_log_likelihood(run.model, {k: v[shuffled] for k, v in batch.items()}, 5).numpy()
    assert np.corrcoef(nll_shuffled, batch["lengths"][shuffled].numpy())[0, 1] > 0.8
    assert "interpolation_linear.png" in report["figures_skipped"]  # its code's size depends on the lengths
    # and it resumes
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.epochs=4", "--quiet"]) == 0


def test_two_plain_functions_of_x_as_in_pyros_examples(tmp_path, monkeypatch, capsys):
    (tmp_path / "fns.py").write_text(
        "import torch, pyro, pyro.distributions as dist\n"
        "from torch import nn\n"
        "class Nets(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.enc = nn.Linear(784, 8)\n"
        "        self.dec = nn.Linear(4, 784)\n"
        "nets = Nets()\ndef model(x):\n"
        "    pyro.module('nets', nets)\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        z = pyro.sample('z', dist.Normal(x.new_zeros(4), 1.0).to_event(1))\n"
        "        pyro.sample('x', dist.Bernoulli(logits=nets.dec(z), validate_args=False).to_event(1),\n"
        "                    obs=x.reshape(-1, 784))\n"
        "def guide(x):\n    with pyro.plate('data', x.shape[0]):\n"
        "        loc, s = nets.enc(x.reshape(-1, 784)).chunk(2, -1)\n"
        "        pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fns

    data = ppvae.load_dataset(limit_train=256, limit_test=64)
    run = ppvae.train(ppvae.from_functions(fns.model, fns.guide, fns.nets), data, epochs=2, batch_size=64,
                      device="cpu", progress=False, run_dir=tmp_path / "run")
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys, k=5)


# ---- errors in a user's program ----------------------------------------------------------------------------
def _buggy(tmp_path, body):
    (tmp_path / "buggy.py").write_text(
        "import torch, pyro, pyro.distributions as dist\n"
        "from torch import nn\n"
        "class VAE(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.enc = nn.Linear(784, 8)\n"
        "        self.dec = nn.Linear(4, 784)\n" + body)
    return f"model.name={tmp_path / 'buggy.py'}:VAE"


GUIDE = ("    def guide(self, x):\n"
         "        with pyro.plate('data', x.shape[0]):\n"
         "            loc, s = self.enc(x.reshape(-1, 784)).chunk(2, -1)\n"
         "            pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n")


def test_an_error_in_a_users_program_is_one_line_naming_its_file_and_line(tmp_path, capsys, monkeypatch):
    name = _buggy(tmp_path, "    def model(self, x):\n"
                            "        with pyro.plate('data', x.shape[0]):\n"
                            "            z = pyro.sample('z', dist.Normal(x.new_zeros(4), 1.0).to_event(1))\n"
                            "            logits = self.dec(z).view(-1, 783)\n"
                            "            pyro.sample('x', dist.Bernoulli(logits=logits).to_event(1), obs=x)\n" + GUIDE)
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", name, "--set", "device=cpu",
            "--set", "data.limit_train=64", "--set", "data.limit_test=64"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.fullmatch(rf"ppvae train: error: VAE.model failed at {re.escape(str(tmp_path / 'buggy.py'))}:11 "
                        rf"\(logits = self.dec\(z\).view\(-1, 783\)\): RuntimeError: shape .*; set "
                        rf"PPVAE_TRACEBACK=1 \(or ppvae --traceback\) for the full traceback", err), err
    # the full traceback where asked for
    with pytest.raises(RuntimeError, match="shape"):
        main(["--traceback", *args[:3], str(tmp_path / "run2"), *args[4:]])


def test_a_parameter_without_a_source_is_named_before_training_and_inputs_renames(tmp_path, capsys):
    name = _buggy(tmp_path, "    def model(self, images):\n"
                            "        with pyro.plate('data', images.shape[0]):\n"
                            "            z = pyro.sample('z', dist.Normal(images.new_zeros(4), 1.0).to_event(1))\n"
                            "            pyro.sample('x', dist.Bernoulli(logits=self.dec(z), validate_args=False)"
                            ".to_event(1), obs=images.reshape(-1, 784))\n"
                            + GUIDE.replace("(self, x)", "(self, images)").replace("x.", "images."))
    args = ["train", "--quiet", "--set", name, "--set", "device=cpu", "--set", "data.limit_train=64",
            "--set", "data.limit_test=64", "--set", "train.epochs=1"]
    assert main([*args, "--run-dir", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == (
        "ppvae train: error: VAE.guide's parameter 'images' has no source: the batch has keys 'x', 'y'; name the key "
        "with model.inputs = { images = \"x\" }, build it with a data.transform, or give the parameter a default")
    assert main([*args, "--run-dir", str(tmp_path / "b"), "--set", 'model.inputs={images="x"}']) == 0
    assert load_run(tmp_path / "b").spec["model"]["inputs"] == {"images": "x"}


# ---- derived capabilities against declared ones -------------------------------------------------------------
class _Bare(torch.nn.Module):
    """The stock VAE's two programs and nothing else, called the way Pyro's examples call theirs."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def model(self, x):
        return self.vae.model({"x": x})

    def guide(self, x):
        return self.vae.guide({"x": x})


def test_capabilities_derived_from_the_traces_equal_the_stock_vaes_declared_ones(digits_vae_run):
    from ppvae.evaluate.figures import latent_traversals

    run = load_run(digits_vae_run)
    vae, data = run.model, run.data
    bare = ppvae.program(_Bare(vae)).attach_data(data)
    x = data.test[:6]
    assert not bare.declares("generate") and bare.can("generate") and bare.can("encode")
    torch.manual_seed(3)
    declared = vae.generate(16)
    torch.manual_seed(3)
    derived = bare.generate(16)
    assert torch.equal(declared, derived)
    assert torch.equal(vae.encode(x), bare.encode(x))
    assert torch.equal(vae.reconstruct(x), bare.reconstruct(x))
    for method in ("linear", "spherical"):
        assert torch.equal(ppvae.interpolate(vae, x[:3], x[3:], method=method),
                           ppvae.interpolate(bare, x[:3], x[3:], method=method))
    assert torch.equal(latent_traversals(vae, x[:1], [0, 2, 5]), latent_traversals(bare, x[:1], [0, 2, 5]))


def test_python_train_takes_the_programs_binding_and_records_it(tmp_path, monkeypatch, capsys):
    """ppvae.train(model, data, inputs=..., transform=...) says how to call the program, as a spec does, and the
    run directory calls the rebuilt program the same way."""
    (tmp_path / "flat_vae.py").write_text(
        "import torch, pyro, pyro.distributions as dist\n"
        "from torch import nn\n"
        "class FlatVAE(nn.Module):\n"
        "    def __init__(self, d=784, z_dim=4):\n"
        "        super().__init__()\n"
        "        self.d, self.z_dim = d, z_dim\n"
        "        self.enc = nn.Linear(d, 2 * z_dim)\n"
        "        self.dec = nn.Linear(z_dim, d)\n"
        "    def model(self, pixels):\n"
        "        assert pixels.dim() == 2, 'takes flat images'\n"
        "        with pyro.plate('data', pixels.shape[0]):\n"
        "            z = pyro.sample('z', dist.Normal(pixels.new_zeros(self.z_dim), 1.0).to_event(1))\n"
        "            pyro.sample('x', dist.Bernoulli(logits=self.dec(z), validate_args=False).to_event(1), "
        "obs=pixels)\n    def guide(self, pixels):\n"
        "        with pyro.plate('data', pixels.shape[0]):\n"
        "            loc, s = self.enc(pixels).chunk(2, -1)\n"
        "            pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from flat_vae import FlatVAE

    data = ppvae.load_dataset(limit_train=256, limit_test=64)
    run = ppvae.train(FlatVAE(), data, epochs=2, batch_size=64, device="cpu", progress=False,
                      run_dir=tmp_path / "run", inputs={"pixels": "x"}, transform="flatten")
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    assert run.spec["model"]["inputs"] == {"pixels": "x"} and run.spec["data"]["transform"] == {"name": "flatten"}
    # samples and reconstructions come back shaped like the data's images, although the program is flat
    p = ppvae.program(load_run(tmp_path / "run").model).attach_data(data)
    assert p.generate(4).shape == (4, 1, 28, 28) and p.reconstruct(data.test[:3]).shape == (3, 1, 28, 28)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "run"), "-k", "5", "--no-figures"]) == 0
    with pytest.raises(ValueError, match=r"transform must be a name, an import path, a list of them or a function"):
        ppvae.train(FlatVAE(), data, epochs=1, progress=False, transform=3)
