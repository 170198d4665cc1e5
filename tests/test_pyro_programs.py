"""Pyro's own programs as they are: four VAE-family programs written the way Pyro's examples write them and the
topic model of its ProdLDA tutorial (``tests/pyro_style/``: plain ``nn.Module`` classes, ``model(x)`` /
``model(xs, ys=None)`` / the DMM's ``model(mini_batch, ...)`` / ``model(docs)``, their own plate and site names and
constructors) train from the command line by path, and every verb works on their run directories from another
folder, with nothing in them changed."""

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyro
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
    monkeypatch.delitem(sys.modules, "my_vae", raising=False)  # another test's my_vae.py is not this one
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


def test_the_first_parameter_reads_the_data_and_a_parameter_without_a_source_is_named_and_inputs_renames(
        tmp_path, capsys):
    # model(images, digits): the first parameter reads x, as Pyro's examples pass the data first
    name = _buggy(tmp_path, "    def model(self, images, digits):\n"
                            "        assert digits.shape == images.shape[:1]\n"
                            "        with pyro.plate('data', images.shape[0]):\n"
                            "            z = pyro.sample('z', dist.Normal(images.new_zeros(4), 1.0).to_event(1))\n"
                            "            pyro.sample('x', dist.Bernoulli(logits=self.dec(z), validate_args=False)"
                            ".to_event(1), obs=images.reshape(-1, 784))\n"
                            + GUIDE.replace("(self, x)", "(self, images)").replace("x.", "images."))
    args = ["train", "--quiet", "--set", name, "--set", "device=cpu", "--set", "data.limit_train=64",
            "--set", "data.limit_test=64", "--set", "train.epochs=1"]
    assert main([*args, "--run-dir", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == (
        "ppvae train: error: VAE.model's parameter 'digits' has no source: the batch has keys 'x', 'y'; name the key "
        "with model.inputs = { digits = \"x\" }, build it with a data.transform, or give the parameter a default")
    # a rename gives it one
    assert main([*args, "--run-dir", str(tmp_path / "b"), "--set", 'model.inputs={digits="y"}']) == 0
    assert load_run(tmp_path / "b").spec["model"]["inputs"] == {"digits": "y"}


def test_the_binder_reads_the_first_parameter_from_x_only_where_no_key_names_it():
    from ppvae.inference.binding import Binder

    def model(docs, labels=None):
        return docs, labels

    def guide(x, docs=None):
        return x, docs

    b, x, y = Binder(), torch.zeros(2, 3), torch.ones(2)
    args = b.prepare({"x": x, "y": y})
    assert b.sources(model, args) == {"docs": "x"} and b.call(model, args) == (x, None)
    assert b.sources(guide, args) == {"x": "x"}  # its second parameter is not the first: no source, its default
    docs = torch.full((2, 3), 2.0)
    assert b.sources(model, b.prepare({"x": x, "docs": docs})) == {"docs": "docs"}  # a key of its own name wins
    assert Binder({"docs": "y"}).sources(model, args) == {"docs": "y"}  # and a rename wins over both

    def labels_first(ys=None, xs=None):
        return ys, xs

    def data_second(labels, x):
        return labels, x

    # where another parameter reads x, the first one does not: Pyro's ys=None stays None on unlabelled rows
    assert b.sources(labels_first, b.prepare({"x": x})) == {"xs": "x"}
    assert b.call(labels_first, b.prepare({"x": x})) == (None, x)
    with pytest.raises(ValueError, match=r"data_second's parameter 'labels' has no source: the batch has keys 'x'"):
        b.call(data_second, b.prepare({"x": x}))


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


# ---- Pyro's ProdLDA tutorial: a topic model of word counts ---------------------------------------------------
def _npmi(topic_words, docs, top=10):
    """Topic coherence (Lau et al., 2014): the mean normalised pointwise mutual information of each topic's top
    words' pairs, from their co-occurrence in documents; -1 for a pair that never co-occurs, 1 for one that always
    does."""
    seen = (docs > 0).double()
    p = seen.mean(0)
    scores = []
    for words in topic_words.topk(top, dim=1).indices:
        i, j = torch.combinations(words, 2).T
        pij = (seen[:, i] * seen[:, j]).mean(0)
        scores.append(torch.where(pij > 0, (pij / (p[i] * p[j])).log() / -pij.log(), -1.0))
    return torch.cat(scores).mean().item()


def test_npmi_of_words_that_always_never_or_independently_co_occur():
    docs = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    # words 0 and 1 always together: 1; words 0 and 2 each in half of the docs, together in a quarter: 0
    assert _npmi(torch.tensor([[2.0, 1.0, 0.0, 0.0]]), docs, top=2) == pytest.approx(1.0)
    assert _npmi(torch.tensor([[2.0, 0.0, 1.0, 0.0]]), docs, top=2) == pytest.approx(0.0, abs=1e-12)
    assert _npmi(torch.tensor([[2.0, 0.0, 0.0, 1.0]]), docs[[1, 2]], top=2) == -1.0  # 0 and 3: never together


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian's bible-kjv is not installed (apt-get install "
                                                          "bible-kjv)")
def test_pyros_prodlda_trains_on_word_counts_by_path_and_its_host_read_is_named(tmp_path, monkeypatch, capsys):
    import importlib.util

    from ppvae.evaluate import evaluate_elbo
    from ppvae.inference.graphs import capture_problems
    from ppvae.inference.train import Trainer

    spec = importlib.util.spec_from_file_location("prodlda_here", STYLE / "prodlda.py")
    prodlda = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prodlda)

    train_docs, test_docs = prodlda.bible_chapters()
    vocab = train_docs.shape[1]
    from guide import guide_commands

    train, evaluate = guide_commands("runs/prodlda", **{"runs/prodlda": tmp_path / "run",
                                                         "tests/pyro_style/": f"{STYLE}/"})
    assert f"model.vocab_size={vocab}" in train  # the guide's command names this vocabulary's size
    # model(docs): its one parameter reads the data with nothing in the spec; batch norm needs train.drop_last
    # where the last batch has one row (289 rows in batches of 32)
    one_row = [*train[:train.index("train.drop_last=true") - 1], "--quiet", "--set", "data.val_fraction=0",
               "--set", "data.limit_train=289", "--set", "train.epochs=1"]
    one_row[one_row.index(str(tmp_path / "run"))] = str(tmp_path / "one-row")
    assert main(one_row) == 2
    assert capsys.readouterr().err.strip() == (
        "ppvae train: error: ProdLDA cannot train on a batch of one row (Expected more than 1 value per channel "
        "when training, got input size torch.Size([1, 10])), and this epoch's last batch has one: 289 training rows "
        "in batches of train.batch_size = 32; set train.drop_last = true to leave a short last batch out, or "
        "another train.batch_size")
    one_row[one_row.index(str(tmp_path / "one-row"))] = str(tmp_path / "dropped")
    assert main([*one_row, "--set", "train.drop_last=true"]) == 0
    assert ppvae.load_run(tmp_path / "dropped").metrics[-1]["step"] == 9  # 289 // 32 steps, the last row left out

    assert main([*train, "--quiet"]) == 0, capsys.readouterr().err  # all 1,070 training chapters
    run = ppvae.load_run(tmp_path / "run")
    metrics = run.metrics
    # it learns the Bible's topics: the test chapters' ELBO rises above the same program's before training (-638 to
    # -575 nats a chapter when written), and each topic's top words co-occur in the chapters (NPMI 0.11 against
    # -0.27): kings (king israel judah jerusalem david), the tabernacle (gold breadth cubits), Paul's letters, ...
    torch.manual_seed(0)
    untrained = prodlda.ProdLDA(vocab, 10, 100, 0.2)
    before = evaluate_elbo(untrained, test_docs)["elbo"]
    after = evaluate_elbo(run.model, run.data.batch("test"))["elbo"]
    assert after > before + 30, (before, after, [m["val_elbo"] for m in metrics])
    assert _npmi(run.model.beta(), train_docs) > _npmi(untrained.beta(), train_docs) + 0.2
    assert evaluate == ["evaluate", str(tmp_path / "run"), "-k", "20"]  # the guide's, run here from elsewhere
    out, report = _verbs_from_elsewhere(tmp_path / "run", tmp_path, monkeypatch, capsys, k=20)
    assert "log p(obs), IWAE K=20" in out and set(report["elbo"]["kl_sites"]) == {"logtheta"}
    assert report["iwae_log_likelihood"]["value"] > report["elbo"]["elbo"] - 1.0
    # Multinomial's one total_count for the batch is a host read: on a GPU the run trains eagerly and says where
    trainer = Trainer(run.model, run.data, run.spec, progress=False)
    batch = run.data.batch("train")
    with pyro.validation_enabled(False):
        problems = capture_problems(lambda: trainer.loss({"x": batch["x"][:32]}, 0.0).backward())
    line = next(i for i, text in enumerate((STYLE / "prodlda.py").read_text().splitlines(), 1)
                if "total_count = int(" in text)
    found = [(p.what.split(" (")[0], p.where.split(" (")[0]) for p in problems]
    assert found[:2] == [("a tensor read on the host", f"{STYLE / 'prodlda.py'}:{line}"),
                         ("a tensor made from Python numbers", f"{STYLE / 'prodlda.py'}:{line + 1}")], problems
    # what the objective computes after the program ran (Multinomial.log_prob) is named by the distribution's line
    assert all(where.startswith((str(STYLE), str(Path(torch.__file__).parent / "distributions")))
               for _, where in found), problems


# ---- a program that scales its sites ------------------------------------------------------------------------
class _ScaledVAE(torch.nn.Module):
    """Pyro's VAE with every site scaled by ``scale`` (as scANVI scales its loss, or a subsampling plate N / B)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.enc, self.dec = torch.nn.Linear(784, 8), torch.nn.Linear(4, 784)

    def model(self, x):
        import pyro.distributions as dist

        x = x.reshape(-1, 784)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=self.scale):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 4), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.dec(z), validate_args=False).to_event(1), obs=x)

    def guide(self, x):
        import pyro.distributions as dist

        x = x.reshape(-1, 784)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=self.scale):
            loc, s = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, s.exp()).to_event(1))


def test_a_program_that_scales_its_sites_is_evaluated_in_nats_and_told_so_once(monkeypatch):
    import ppvae.traces
    from ppvae.evaluate import evaluate_elbo

    monkeypatch.setattr(ppvae.traces, "_SAID_SCALED", set())  # as in a fresh process

    x = ppvae.load_dataset(limit_train=64, limit_test=100).batch("test")["x"]
    torch.manual_seed(0)
    plain = _ScaledVAE(1.0)
    scaled = _ScaledVAE(1.0 / 784)
    scaled.load_state_dict(plain.state_dict())
    with pytest.warns(UserWarning) as caught:
        elbo, iwae = evaluate_elbo(scaled, x), iwae_log_likelihood(scaled, x, 10)
        again = evaluate_elbo(scaled, x)
    said = [str(w.message) for w in caught if "scales its sites" in str(w.message)]
    assert said == ["_ScaledVAE scales its sites 'z' (x 0.001276), 'obs' (x 0.001276) (poutine.scale or a "
                    "subsampling plate); ppvae evaluates it without the scales, in nats per example: they weigh the "
                    "training objective only"]
    # the same numbers as the program without the scale: nats, not nats / 784
    assert elbo == evaluate_elbo(plain, x) == again and elbo["elbo"] < -400
    assert torch.equal(iwae, iwae_log_likelihood(plain, x, 10))


class _FactorVAE(_ScaledVAE):
    """Pyro's VAE recording its decoder's means (pyro.deterministic) and adding a factor on z (pyro.factor)."""

    def model(self, x):
        import pyro.distributions as dist

        x = x.reshape(-1, 784)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 4), 1.0).to_event(1))
            logits = self.dec(z)
            pyro.deterministic("probs", torch.sigmoid(logits), event_dim=1)
            pyro.factor("penalty", -10.0 * z.pow(2).sum(-1))
            pyro.sample("obs", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


def test_a_deterministic_site_scores_nothing_and_a_factor_is_part_of_the_joint():
    from ppvae.evaluate import evaluate_elbo

    x = ppvae.load_dataset(limit_train=64, limit_test=100).batch("test")["x"]
    torch.manual_seed(0)
    vae = _FactorVAE(1.0)
    out = evaluate_elbo(vae, x)
    assert set(out["recon_sites"]) == {"penalty", "obs"}  # no "probs": it records a value, it is not evidence
    plain = _ScaledVAE(1.0)
    plain.load_state_dict(vae.state_dict())
    # the same draws: the factor adds -10 |z|^2 to the joint, and nothing else changes
    assert out["recon_sites"]["obs"] == pytest.approx(evaluate_elbo(plain, x)["recon_sites"]["obs"])
    assert out["recon_sites"]["penalty"] < -10 and out["kl"] == pytest.approx(evaluate_elbo(plain, x)["kl"])


class _FlowVAE(_ScaledVAE):
    """Pyro's VAE with an inverse autoregressive flow on its guide's Gaussian (Pyro's normalizing-flow tutorial)."""

    def __init__(self):
        import pyro.distributions.transforms as T
        from pyro.nn import AutoRegressiveNN

        super().__init__(1.0)
        self.iaf = T.AffineAutoregressive(AutoRegressiveNN(4, [8]))

    def guide(self, x):
        import pyro.distributions as dist

        pyro.module("iaf", self.iaf)
        x = x.reshape(-1, 784)
        with pyro.plate("data", x.shape[0]):
            loc, s = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.TransformedDistribution(dist.Normal(loc, s.exp()).to_event(1), [self.iaf]))


def test_a_flow_guide_is_evaluated_and_says_which_figures_it_cannot_give_and_why():
    from ppvae.evaluate.report import evaluate_model, summary

    x = ppvae.load_dataset(limit_train=64, limit_test=100).batch("test")["x"]
    torch.manual_seed(0)
    report, _ = evaluate_model(_FlowVAE(), x, num_samples=5, progress=False)
    assert report["iwae_log_likelihood"]["value"] > report["elbo"]["elbo"] - 5.0
    text = summary(report)
    assert ("KL per dimension             -   (not computed: a KL per latent dimension needs a prior and guide that "
            "factorize over the dimensions of latent site 'z', but got TransformedDistribution") in text
    assert ("I(x; z) under q              -   (not computed: the mutual-information estimate needs latent sites whose "
            "q(z | x) has a closed-form mean given x alone; site 'z' (TransformedDistribution) has not: it depends on "
            "other latent draws, or its mean is taken by draws (a flow's is))") in text
