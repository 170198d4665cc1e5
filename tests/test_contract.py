"""Any Pyro program is a first-class ppvae model: the contract, by-path models and components, registries,
beta for any program, objectives, evaluation from traces, and run directories that rebuild exactly what was
trained or refuse."""

import importlib
import importlib.metadata
import re
import shutil
from pathlib import Path

import pyro
import pytest
import torch
from conftest import TINY

import ppvae
from ppvae.cli import main
from ppvae.evaluate import evaluate_elbo, iwae_log_likelihood
from ppvae.inference.checkpoint import CHECKPOINT, load_checkpoint
from ppvae.inference.contract import MissingCapability
from ppvae.inference.objectives import KLScale
from ppvae.inference.program import require
from ppvae.inference.run import load_run, resume, train_spec
from ppvae.registry import load_object
from ppvae.traces import elbo_terms

USER = Path(__file__).resolve().parent / "user_models.py"
HIER = f"{USER}:HierarchicalVAE"
SMALL = ["data.limit_train=256", "data.limit_test=128", "train.batch_size=64", "device=cpu", "train.figures=false"]


def user(name):
    return load_object(f"{USER}:{name}")


@pytest.fixture(scope="module")
def data():
    return ppvae.load_dataset(limit_train=512, limit_test=128)


class _Interrupt(Exception):
    pass


# ---- a model not derived from ppvae.VAE ------------------------------------------------------------------
def test_hierarchical_model_trains_and_its_bounds_agree(data):
    torch.manual_seed(0)
    model = user("HierarchicalVAE")(data.event_shape, z1_dim=8, z2_dim=4)
    run = ppvae.train(model, data, epochs=4, batch_size=64, progress=False, figures=False, device="cpu")
    elbos = [m["val_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 20, elbos  # it learns on real digits
    x = data.test[:64]
    e = evaluate_elbo(model, x, seed=1)
    assert set(e["kl_sites"]) == {"z1", "z2"} and set(e["recon_sites"]) == {"x"}
    assert sum(e["kl_sites"].values()) == pytest.approx(e["kl"], rel=1e-6)  # per-site KL sums to the total
    assert e["elbo"] == pytest.approx(e["recon"] - e["kl"], rel=1e-6)
    iwae = iwae_log_likelihood(model, x, 200, seed=1).mean().item()
    assert iwae > e["elbo"] + 1.0  # a tighter bound than the ELBO, beyond Monte Carlo noise
    units = ppvae.diagnostics.active_units(model, x, by_site=True)
    assert set(units) == {"z1", "z2"} and units["z1"][1].shape == (8,) and units["z2"][1].shape == (4,)


def test_user_model_from_the_cli_by_path_evaluates_samples_and_resumes_from_anywhere(tmp_path, monkeypatch, capsys):
    overrides = SMALL + [f"model.name={HIER}", "model.z1_dim=6", "model.z2_dim=3", "train.epochs=2", "seed=3"]
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run")]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 0
    import csv

    header = next(csv.reader(open(tmp_path / "run" / "metrics.csv")))
    assert header[-3:] == ["val_recon_x", "val_kl_z2", "val_kl_z1"]  # per-site terms after the fixed columns
    spec = (tmp_path / "run" / "spec.toml").read_text()
    assert f'name = "{HIER}"' in spec and "z1_dim = 6" in spec
    assert "[prior]" not in spec and "[likelihood]" not in spec  # parts this model does not take are not shown
    monkeypatch.chdir(tmp_path.parent)  # another directory: the run records the file's absolute path
    run = str(tmp_path / "run")
    assert main(["evaluate", run, "-k", "30", "--max-examples", "40"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"per site +log-likelihood x -[\d.]+; KL z2 [\d.]+, z1 [\d.]+", out), out
    assert main(["sample", run, "-n", "8"]) == 0
    assert main(["reconstruct", run, "-n", "4"]) == 0
    assert (tmp_path / "run" / "figures" / "samples.png").stat().st_size > 1000
    assert main(["train", "--quiet", "--resume", run, "--set", "train.epochs=3"]) == 0
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 3


@pytest.mark.parametrize("model", [[f"model.name={HIER}", "model.z1_dim=6", "model.z2_dim=3"],
                                   [f"model.name={USER}:BatchNormVAE"]],  # batch-norm buffers must come back too
                         ids=["hierarchical", "batch-norm"])
def test_user_model_resume_equals_uninterrupted(tmp_path, model):
    overrides = SMALL + model + ["train.epochs=3", "seed=5"]
    full = train_spec(None, overrides, run_dir=tmp_path / "full", progress=False)

    def stop(trainer, row):
        if row["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_spec(None, overrides, run_dir=tmp_path / "cut", progress=False, callbacks=[stop])
    resumed = resume(tmp_path / "cut", progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), \
        [k for k in a if not torch.equal(a[k], b[k])]
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in full.metrics]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in resumed.metrics]


def test_two_plain_functions_and_a_module_train_and_rebuild(tmp_path):
    mod = pytest.importorskip("user_models")  # the same file, imported by name (tests/ is on sys.path)
    data = ppvae.dataset_from_array(torch.rand(300, 64).round(), name="bits")
    model = ppvae.from_functions(mod.function_model, mod.function_guide, mod.nets)
    run = ppvae.train(model, data, epochs=3, batch_size=50, progress=False, figures=False, device="cpu")
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    # a module of the user's own folder is recorded by its file, so the run directory finds it from anywhere
    assert run.spec["model"] == {"name": "functions", "model": f"{USER}:function_model",
                                 "guide": f"{USER}:function_guide", "modules": f"{USER}:nets"}
    rebuilt = ppvae.build_model(run.spec)
    # the functions' own module, so a checkpoint loads into what they use
    assert rebuilt.modules_ is rebuilt._model_fn.__globals__["nets"]


# ---- capabilities ----------------------------------------------------------------------------------------
def test_a_program_without_capability_methods_gets_every_verb_from_its_traces(tmp_path, capsys):
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", f"model.name={USER}:BareVAE",
            "--set", "train.epochs=1"]
    for o in SMALL:
        args += ["--set", o]
    assert main(args) == 0
    run = str(tmp_path / "run")
    for verb in (["sample", run], ["reconstruct", run], ["interpolate", run]):
        assert main(verb) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "figures" / "samples.png").is_file()
    capsys.readouterr()
    assert main(["sample", run, "--label", "3"]) == 2  # labels are in the data, but the program reads none
    assert capsys.readouterr().err.strip() == (
        "ppvae sample: error: ppvae sample --label needs a model that generates a given class (a cvae, an m2, or a "
        "program with an argument bound to the labels y); BareVAE does not condition on a label")
    report = ppvae.evaluate_run(run, num_samples=25, max_examples=30)
    assert report["figures_skipped"] == {} and {"samples.png", "traversals.png"} <= set(report["figures"])


def test_a_capability_that_cannot_be_derived_is_one_line(data):
    model = user("DiscreteLatentVAE")(data.event_shape)  # its only latent is discrete: no code to move along
    with pytest.raises(MissingCapability, match=r"^interpolation needs the model's encode\(\) method, which "
                                                r"DiscreteLatentVAE does not have, and it cannot be derived from its "
                                                r"traces: DiscreteLatentVAE.guide has no continuous latent site"):
        ppvae.interpolate(ppvae.program(model).attach_data(data), data.test[:2], data.test[2:4])


# ---- the subclass that overrides only model ----------------------------------------------------------------
def test_subclass_overriding_model_evaluates_samples_and_resumes_as_trained(tmp_path, data):
    torch.manual_seed(0)
    vae = user("LaplaceVAE")(data.event_shape, 4, encoder={"name": "mlp", "hidden": [64]},
                              decoder={"name": "mlp", "hidden": [64]})
    run = ppvae.train(vae, data, epochs=2, batch_size=64, progress=False, figures=False, device="cpu",
                      run_dir=tmp_path / "run")
    assert run.spec["model"]["name"] == f"{USER}:LaplaceVAE"
    loaded = load_run(tmp_path / "run")
    assert type(loaded.model).__name__ == "LaplaceVAE"
    in_memory = evaluate_elbo(vae, data.test, seed=0)["elbo"]
    report = ppvae.evaluate_run(tmp_path / "run", num_samples=25, figures=False)
    assert report["elbo"]["elbo"] == pytest.approx(in_memory, abs=1e-4)
    stock = ppvae.VAE(data.event_shape, 4, encoder={"name": "mlp", "hidden": [64]},
                      decoder={"name": "mlp", "hidden": [64]})
    stock.load_state_dict(vae.state_dict())
    assert abs(evaluate_elbo(stock, data.test, seed=0)["elbo"] - in_memory) > 0.1  # same seed, another program
    assert loaded.model.generate(4).shape == (4, 1, 28, 28)
    more = resume(tmp_path / "run", ["train.epochs=3"], progress=False)
    assert len(more.metrics) == 3 and type(more.model).__name__ == "LaplaceVAE"


def test_stock_guide_composes_inside_a_users_own_data_plate(data):
    vae = user("OwnPlateVAE")(data.event_shape, 3)
    run = ppvae.train(vae, data, epochs=1, batch_size=128, progress=False, figures=False, device="cpu")
    assert run.metrics[-1]["val_elbo"] < 0


# ---- a run directory rebuilds exactly what was trained, or says why not -------------------------------------
def test_changed_or_moved_source_is_refused(tmp_path, capsys):
    copy = tmp_path / "my_models.py"
    shutil.copy(USER, copy)
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", f"model.name={copy}:BareVAE",
            "--set", "train.epochs=1"]
    for o in SMALL:
        args += ["--set", o]
    assert main(args) == 0
    copy.write_text(copy.read_text() + "\n# edited\n")
    with pytest.raises(ValueError, match=r"was trained with code from .*my_models.py, which has changed since"):
        load_run(tmp_path / "run")
    copy.unlink()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "which no longer exists (moved or deleted)" in capsys.readouterr().err


def test_a_model_that_cannot_be_rebuilt_trains_but_its_run_directory_refuses(tmp_path, data):
    class Local(user("BareVAE")):  # defined in a function: nothing can import it again
        pass

    with pytest.warns(UserWarning, match="will not be able to rebuild this model"):
        ppvae.train(Local(data.event_shape), data, epochs=1, progress=False, figures=False, device="cpu",
                    run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"cannot be rebuilt exactly.*defined inside a function"):
        load_run(tmp_path / "run")
    with pytest.raises(ValueError, match="cannot be rebuilt exactly"):
        resume(tmp_path / "run", ["train.epochs=2"], progress=False)


def test_a_plain_module_prior_is_recorded_by_path_and_rebuilt(tmp_path, data):
    prior = user("MyLaplacePrior")(4, scale=0.5)
    vae = ppvae.VAE(data.event_shape, 4, prior=prior, encoder={"name": "mlp", "hidden": [32]},
                    decoder={"name": "mlp", "hidden": [32]})
    run = ppvae.train(vae, data, epochs=1, progress=False, figures=False, device="cpu", run_dir=tmp_path / "run")
    assert run.spec["prior"] == {"name": f"{USER}:MyLaplacePrior", "scale": 0.5}
    loaded = load_run(tmp_path / "run")
    assert type(loaded.model.prior).__name__ == "MyLaplacePrior" and loaded.model.prior.scale == 0.5
    assert evaluate_elbo(loaded.model, data.test)["elbo"] == pytest.approx(evaluate_elbo(vae, data.test)["elbo"])


def test_components_by_path_and_by_entry_point(tmp_path, monkeypatch, capsys):
    # by import path on the command line
    run = train_spec(None, TINY + ["train.epochs=1", "train.figures=false", f"prior.name={USER}:MyLaplacePrior",
                                   "prior.scale=2.0"], run_dir=tmp_path / "a", progress=False)
    assert run.model.prior.scale == 2.0
    # an installed package's entry point, found by its name
    from ppvae import registry

    ep = importlib.metadata.EntryPoint(name="prior.my_laplace", value="user_models:MyLaplacePrior",
                                       group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    assert "my_laplace" in ppvae.PRIORS.names
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "b"), "--set", "prior.name=my_laplace"]
    for o in TINY + ["train.epochs=1", "train.figures=false"]:
        args += ["--set", o]
    assert main(args) == 0
    try:
        assert 'name = "my_laplace"' in (tmp_path / "b" / "spec.toml").read_text()
    finally:
        registry.PRIORS._entries.pop("my_laplace")
        cls = importlib.import_module("user_models").MyLaplacePrior
        if "registry_name" in cls.__dict__:
            del cls.registry_name


# ---- beta, objectives and particles for any program ----------------------------------------------------------
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0, 3.0])
def test_kl_scale_weights_every_latent_site_of_any_program(beta, data):
    torch.manual_seed(0)
    model = user("HierarchicalVAE")(data.event_shape)
    x = {"x": data.test[:16]}
    scale = KLScale(beta)
    torch.manual_seed(1)
    loss = ppvae.OBJECTIVES.build("Trace_ELBO", max_plate_nesting=1).differentiable_loss(
        scale(model.model), scale(model.guide), x)
    torch.manual_seed(1)
    recon, kl = elbo_terms(model.model, model.guide, x, analytic=False)
    assert loss.item() == pytest.approx((beta * kl - recon).sum().item(), rel=1e-5)


@pytest.mark.parametrize("beta", [["beta.name=linear", "beta.warmup_epochs=1"], ["beta.name=cyclical"],
                                  ["beta.name=capacity", "beta.gamma=10", "beta.capacity=5"],
                                  ["beta.name=free_bits", "beta.threshold=0.2"], ["beta.value=2"]])
def test_every_beta_schedule_trains_a_user_program(beta, tmp_path):
    run = train_spec(None, SMALL + [f"model.name={HIER}", "train.epochs=2"] + beta, run_dir=tmp_path,
                     progress=False)
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in run.metrics)
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"] - 5


def test_free_bits_names_the_site_that_does_not_factorize(tmp_path):
    with pytest.raises(ValueError, match=r"factorize over the dimensions of latent site 'z'.*MixtureSameFamily"):
        train_spec(None, TINY + ["train.epochs=1", "train.figures=false", "prior.name=mixture",
                                 "beta.name=free_bits"], run_dir=tmp_path, progress=False)


def test_trace_enum_elbo_sums_out_a_discrete_latent_exactly(data):
    torch.manual_seed(0)
    model = user("DiscreteLatentVAE")((16,))
    x = {"x": (torch.rand(10, 16) > 0.5).float()}
    elbo = ppvae.inference.objectives.make_objective({"name": "TraceEnum_ELBO"}, model)
    loss = elbo.differentiable_loss(model.model, model.guide, x)
    # the exact ELBO: sum over c in {0, 1} of q(c|x) [log p(c) + log p(x|c) - log q(c|x)]
    xs = x["x"]
    q1 = torch.sigmoid(model.enc(xs).squeeze(-1))
    exact = 0.0
    for c, qc in ((0.0, 1 - q1), (1.0, q1)):
        logits = model.dec(torch.full((10, 1), c))
        log_px = torch.distributions.Bernoulli(logits=logits).log_prob(xs).sum(-1)
        exact = exact + qc * (torch.log(torch.tensor(0.5)) + log_px - qc.log())
    assert loss.item() == pytest.approx(-exact.sum().item(), rel=1e-5)
    bits = ppvae.dataset_from_array((torch.rand(200, 16) > 0.5).float())
    run = ppvae.train(model, bits, epochs=3, objective="TraceEnum_ELBO", progress=False, figures=False, device="cpu")
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]


def test_a_latent_that_cannot_be_reparameterized_names_the_objectives_that_can(data):
    model = user("DiscreteLatentVAE")(data.event_shape)
    with pytest.raises(ValueError, match=r"latent site 'c' \(Bernoulli\) cannot be reparameterized, so Trace_ELBO "
                                         r"has no pathwise gradient for it; use objective TraceEnum_ELBO"):
        ppvae.train(model, data, epochs=1, progress=False, device="cpu")


def test_a_program_that_does_not_broadcast_is_evaluated_one_particle_at_a_time(data):
    torch.manual_seed(0)
    model = user("NoBroadcastVAE")(data.event_shape)
    x = data.test[:20]
    with pytest.warns(UserWarning, match="do not broadcast over a leading particle dimension"):
        ll = iwae_log_likelihood(model, x, 50, seed=0)
    assert ll.shape == (20,) and torch.isfinite(ll).all()
    # the same estimator as the vectorized one of a program that broadcasts, on the same weights
    twin = user("BareVAE")(data.event_shape)
    twin.load_state_dict(model.state_dict())
    a = iwae_log_likelihood(twin, x, 2000, seed=0).mean().item()
    b = iwae_log_likelihood(model, x, 2000, seed=1).mean().item()
    assert a == pytest.approx(b, abs=0.5)
    assert ppvae.diagnostics.posterior_inference_data(model, x[:3], num_draws=10).posterior["z"].shape == (1, 10, 3, 4)


# ---- batches and datasets ------------------------------------------------------------------------------------
def test_labels_travel_with_the_batch_and_a_missing_key_is_named(data):
    run = ppvae.train(user("LabelledVAE")(data.event_shape), data, epochs=1, progress=False, figures=False,
                      device="cpu")
    assert run.metrics
    unlabelled = ppvae.dataset_from_array(data.train[:100])
    with pytest.raises(ValueError, match=r"LabelledVAE reads batch key\(s\) 'y', but the data provide only 'x'"):
        ppvae.train(user("LabelledVAE")(data.event_shape), unlabelled, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"the model reads batch\['y'\] but the data provide only 'x'"):
        ppvae.train(user("UndeclaredLabelVAE")(data.event_shape), unlabelled, epochs=1, progress=False)


def test_a_registered_dataset_keeps_integer_tokens_factors_and_extra_keys():
    @ppvae.DATASETS.register("test-tokens")
    def tokens(*, length: int = 5):
        g = torch.Generator().manual_seed(0)
        make = lambda n: {"x": torch.randint(0, 7, (n, length), generator=g),  # noqa: E731
                          "y": torch.randint(0, 2, (n, 3), generator=g), "lengths": torch.full((n,), length)}
        return make(20), make(8)

    try:
        d = ppvae.load_dataset("test-tokens", length=6, limit_train=10)
        batch = d.batch("train")  # one of the 10 rows is held out for validation, with every key
        assert batch["x"].dtype == torch.int64 and batch["x"].shape == (9, 6) and int(batch["x"].max()) <= 6
        assert batch["y"].shape == (9, 3) and batch["lengths"].tolist() == [6] * 9
        assert {k: v.shape[0] for k, v in d.batch("val").items()} == {"x": 1, "y": 1, "lengths": 1}
        assert d.spec == {"name": "test-tokens", "length": 6, "limit_train": 10, "val_fraction": 0.1}
        with pytest.raises(ValueError, match=r"dataset 'test-tokens' got unknown option\(s\) size; it accepts: "):
            ppvae.load_dataset("test-tokens", size=3)
        with pytest.raises(ValueError, match="comes with its own train/test split"):
            ppvae.load_dataset("test-tokens", test_fraction=0.5)
        with pytest.raises(ValueError, match=r"x has dtype torch.int64"):  # the stock VAE scores real values
            ppvae.train(ppvae.VAE((6,), 2), d, epochs=1, progress=False)
    finally:
        ppvae.DATASETS._entries.pop("test-tokens")


# ---- bad input, one clear line each ------------------------------------------------------------------------
@pytest.mark.parametrize("override,message", [
    ("model.name=no_such_module:Model", r"model 'no_such_module:Model': cannot import module 'no_such_module'"),
    ("model.name=/nowhere/models.py:Model", r"the file '/nowhere/models.py' does not exist \(has it moved\?"),
    (f"model.name={USER}:Missing", r"has no attribute 'Missing'"),
    (f"model.name={USER}:Nets", r"Nets is not a ppvae model: it has no model and no guide method"),
    (f"model.name={USER}:WrongSiteVAE", r"the guide samples site\(s\) 'w' that the model does not have"),
    (f"model.name={HIER}", r"model '.*HierarchicalVAE' got unknown option\(s\) depth; it accepts: event_shape, "
                           r"z1_dim, z2_dim, hidden"),
    ("beta.value=high", r"beta schedule 'constant' option value must be a number, got 'high'"),
    ("optimizer.lr=fast", r"optimizer 'adam' option lr must be a number, got 'fast'"),
])
def test_bad_programs_and_options_are_one_line(override, message, tmp_path, capsys):
    extra = ["model.depth=3"] if override == f"model.name={HIER}" else []
    args = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", override]
    for o in SMALL + extra:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_a_vae_part_the_model_does_not_take_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"the spec sets \[likelihood\] .* but model .*HierarchicalVAE' takes no "
                                         r"'likelihood' argument"):
        train_spec(None, SMALL + [f"model.name={HIER}", "likelihood.name=gaussian"], run_dir=tmp_path, progress=False)


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, r"train.epochs must be >= 1, got 0"),
    ({"epochs": 2.5}, r"train.epochs must be int, got 2.5"),
    ({"batch_size": 0}, r"train.batch_size must be >= 1, got 0"),
    ({"beta": "warm"}, r"unknown beta schedule 'warm'"),
])
def test_python_train_options_are_checked_as_the_specs_are(kwargs, message, data):
    with pytest.raises(ValueError, match=message):
        ppvae.train(ppvae.VAE(data.event_shape, 2), data, progress=False, **{"epochs": 1, **kwargs})


def test_require_names_the_verb_and_the_method():
    with pytest.raises(MissingCapability, match=r"^figures needs the model's decode\(\) method, which BareVAE"):
        require(user("BareVAE")((4,)), "decode", "figures")
    assert callable(require(ppvae.VAE((4,), 2), "decode", "figures"))


@pytest.mark.parametrize("beta,weigh", [(1.0, "mask"), (0.3, "mask"), (0.3, "scale"), (1.0, "weights"),
                                         (torch.tensor(0.3), "scale")])  # a device tensor, as a graphed step's
def test_one_pass_trace_elbo_equals_pyros_on_a_user_program(beta, weigh, data):
    """The trainer's Trace_ELBO for reparameterized user programs skips building Pyro's traces; loss and
    gradients are Pyro's on the same draws (with beta, and a user's own poutine.mask, poutine.scale by a number,
    or per-example weights inside the program)."""
    from pyro.infer import Trace_ELBO

    class Masked(user("HierarchicalVAE")):
        def model(self, batch):
            rows = batch["x"].flatten(1)
            handler = {"mask": lambda: pyro.poutine.mask(mask=rows[:, 0] < 0.5),
                       "scale": lambda: pyro.poutine.scale(scale=0.25),
                       "weights": lambda: pyro.poutine.scale(scale=rows.mean(1) + 0.5)}[weigh]
            with handler():
                return super().model(batch)

    torch.manual_seed(0)
    model = Masked(data.event_shape)
    x = {"x": data.test[:32]}
    params = list(model.parameters())
    scale = KLScale(beta)
    torch.manual_seed(1)
    ref = Trace_ELBO(max_plate_nesting=1).differentiable_loss(scale(model.model), scale(model.guide), x)
    objective = ppvae.OBJECTIVES.build("Trace_ELBO", max_plate_nesting=1)
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        fast = objective.differentiable_loss(scale(model.model), scale(model.guide), x)
    assert objective._one_pass is True
    assert fast.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(ref, params), torch.autograd.grad(fast, params)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_pass_trace_elbo_leaves_what_it_cannot_do_to_pyro():
    from pyro.infer import Trace_ELBO

    torch.manual_seed(0)
    model = user("DiscreteLatentVAE")((16,))
    x = {"x": (torch.rand(10, 16) > 0.5).float()}
    objective = ppvae.OBJECTIVES.build("Trace_ELBO", max_plate_nesting=1)
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        loss = objective.differentiable_loss(model.model, model.guide, x)
    assert objective._one_pass is False  # a Bernoulli draw: the score-function estimator is Pyro's
    torch.manual_seed(1)
    with pyro.validation_enabled(False):
        ref = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model.model, model.guide, x)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


# ---- found in review: each would have computed a number from another program, or a wrong one -----------------
def _module_file(directory, scale):
    directory.mkdir()
    (directory / "mymod.py").write_text(
        "import ppvae, pyro, pyro.distributions as dist, torch\n"
        "class Tiny(ppvae.Model):\n"
        "    def __init__(self, d: int = 4):\n"
        "        super().__init__()\n"
        "        self.enc = torch.nn.Linear(d, 2)\n"
        "    def model(self, batch):\n"
        "        x = batch['x']\n"
        "        with pyro.plate('data', x.shape[0]):\n"
        "            z = pyro.sample('z', dist.Normal(x.new_zeros(1), 1.0).to_event(1))\n"
        f"            pyro.sample('x', dist.Normal(z * {scale}, 1.0).to_event(1), obs=x[:, :1])\n"
        "    def guide(self, batch):\n"
        "        loc, s = self.enc(batch['x']).chunk(2, -1)\n"
        "        with pyro.plate('data', batch['x'].shape[0]):\n"
        "            pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n")


def test_a_module_of_the_users_folder_is_recorded_by_file_and_a_package_shadowed_on_the_path_is_refused(
        tmp_path, monkeypatch):
    import sys

    _module_file(tmp_path / "a", 1.0)
    _module_file(tmp_path / "b", 10.0)
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    import mymod

    data = ppvae.dataset_from_array(torch.randn(40, 4))
    run = ppvae.train(mymod.Tiny(), data, epochs=1, progress=False, figures=False, device="cpu",
                      run_dir=tmp_path / "run")
    assert run.spec["model"]["name"] == f"{tmp_path / 'a' / 'mymod.py'}:Tiny"
    before = evaluate_elbo(load_run(tmp_path / "run").model, data.test)["elbo"]
    del sys.modules["mymod"]
    monkeypatch.syspath_prepend(str(tmp_path / "b"))  # now another mymod.py comes first on the path
    assert evaluate_elbo(load_run(tmp_path / "run").model, data.test)["elbo"] == before  # still a's program

    # a module inside a package is recorded by name; another package of that name first on the path is refused
    for d in ("a", "b"):
        (tmp_path / d / "pkg").mkdir()
        (tmp_path / d / "pkg" / "__init__.py").write_text("")
        (tmp_path / d / "mymod.py").rename(tmp_path / d / "pkg" / "mymod.py")
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    import pkg.mymod

    ppvae.train(pkg.mymod.Tiny(), data, epochs=1, progress=False, figures=False, device="cpu",
                run_dir=tmp_path / "run2")
    assert load_run(tmp_path / "run2")
    for name in ("pkg", "pkg.mymod"):
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(ValueError, match=r"trained with code from .*a/pkg/mymod.py, but its spec now imports "
                                         r".*b/pkg/mymod.py"):
        load_run(tmp_path / "run2")
    for name in ("pkg", "pkg.mymod"):
        sys.modules.pop(name, None)


def test_a_setting_changed_after_construction_makes_the_run_unrebuildable(tmp_path, data):
    model = user("ScaledVAE")(data.event_shape, obs_scale=1.0)
    model.obs_scale = 0.3  # the spec records 1.0: a rebuild would train another objective
    with pytest.warns(UserWarning, match="will not be able to rebuild"):
        ppvae.train(model, data, epochs=1, progress=False, figures=False, device="cpu", run_dir=tmp_path / "a")
    with pytest.raises(ValueError, match=r"cannot be rebuilt exactly.*setting \('', 'obs_scale', 0.3\) was trained"):
        load_run(tmp_path / "a")

    def change(trainer, row):  # and the same when training itself changes it
        trainer.model.obs_scale = 0.5

    ppvae.train(user("ScaledVAE")(data.event_shape), data, epochs=2, progress=False, figures=False, device="cpu",
                run_dir=tmp_path / "b", callbacks=[change])
    with pytest.raises(ValueError, match=r"the model was changed during training"):
        load_run(tmp_path / "b")


def test_plain_functions_are_fingerprinted(tmp_path, monkeypatch):
    (tmp_path / "fnmod.py").write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "nets = torch.nn.Linear(4, 2)\n"
        "SCALE = 1.0\ndef model(batch):\n"
        "    x = batch['x']\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        z = pyro.sample('z', dist.Normal(x.new_zeros(1), 1.0).to_event(1))\n"
        "        pyro.sample('x', dist.Normal(z * SCALE, 1.0).to_event(1), obs=x[:, :1])\n"
        "def guide(batch):\n"
        "    loc, s = nets(batch['x']).chunk(2, -1)\n"
        "    with pyro.plate('data', batch['x'].shape[0]):\n"
        "        pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fnmod

    data = ppvae.dataset_from_array(torch.randn(40, 4))
    ppvae.train(ppvae.from_functions(fnmod.model, fnmod.guide, fnmod.nets), data, epochs=1, progress=False,
                figures=False, device="cpu", run_dir=tmp_path / "run")
    assert load_run(tmp_path / "run")
    (tmp_path / "fnmod.py").write_text((tmp_path / "fnmod.py").read_text().replace("SCALE = 1.0", "SCALE = 0.2"))
    with pytest.raises(ValueError, match=r"fnmod.py, which has changed since"):
        load_run(tmp_path / "run")


def test_iwae_weights_are_per_example_with_a_feature_plate_and_refused_for_a_global_latent():
    torch.manual_seed(0)
    x = torch.randn(6, 3)
    exact = torch.distributions.Normal(0.0, 2 ** 0.5).log_prob(x).sum(-1)  # the guide is exact: any K is exact
    ll = iwae_log_likelihood(user("GaussianGrid")(), x, 7, seed=0)
    assert ll.shape == (6,) and torch.allclose(ll, exact, atol=1e-5)
    with pytest.raises(ValueError, match=r"site 'shift' lies outside pyro.plate\('data'\), so its log-density is "
                                         r"shared by all examples"):
        iwae_log_likelihood(user("GlobalLatent")(), x, 7)


def test_elbo_terms_weigh_each_side_by_its_own_sites_scale_and_take_subsamples():
    import pyro.distributions as dist
    from pyro.infer import Trace_ELBO

    class HalfPrior(user("BareVAE")):  # a user's poutine.scale on the model side only
        def model(self, batch):
            with pyro.poutine.scale(scale=0.5):
                return super().model(batch)

    class Subsampled(user("BareVAE")):
        def model(self, batch):
            x = batch["x"].flatten(1)
            with pyro.plate("data", x.shape[0], subsample_size=5) as idx:
                z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.dec(z), validate_args=False).to_event(1), obs=x[idx])

        def guide(self, batch):
            x = batch["x"].flatten(1)
            with pyro.plate("data", x.shape[0], subsample_size=5) as idx:
                loc, raw = self.enc(x[idx]).chunk(2, -1)
                pyro.sample("z", dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4).to_event(1))

    x = {"x": (torch.rand(20, 16) > 0.5).float()}
    for cls in (HalfPrior, Subsampled):
        torch.manual_seed(0)
        model = cls((16,))
        torch.manual_seed(1)
        ref = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model.model, model.guide, x)
        torch.manual_seed(1)
        recon, kl = elbo_terms(model.model, model.guide, x, analytic=False)
        assert (kl - recon).sum().item() == pytest.approx(ref.item(), rel=1e-5), cls.__name__


def test_stock_guide_in_a_users_subsampled_plate_and_none_defaults_and_vae_subclass_messages(tmp_path, data):
    class Sub(ppvae.VAE):
        def guide(self, batch, beta=1.0):
            with pyro.plate("data", 10, subsample_size=4) as idx:
                return self.q(batch["x"][idx])

    vae = Sub((1, 28, 28), 2)
    tr = pyro.poutine.trace(vae.guide).get_trace({"x": data.test[:10]})
    assert tr.nodes["z"]["value"].shape == (4, 2)  # the stock guide joined the user's plate, subsample and all
    # a None default left alone is no obstacle to the rebuild
    model = user("ScaledVAE")(data.event_shape)
    ppvae.train(model, data, epochs=1, progress=False, figures=False, device="cpu", run_dir=tmp_path / "run")
    assert load_run(tmp_path / "run").model.hidden is None

    class Wide(ppvae.VAE):
        def __init__(self, event_shape, width: int = 3):
            super().__init__(event_shape, width)

    with pytest.raises(ValueError, match=r"a VAE subclass with its own __init__ must take the VAE's arguments"):
        Wide.from_spec({**ppvae.default_spec(), "model": {"name": "x", "width": 3}}, (4,))


def test_importing_user_code_does_not_shift_the_seeded_initial_weights(tmp_path):
    # a module whose import draws random numbers (a module-level network), named by path, imported by the first run
    source = USER.read_text() + "\n_drawn_at_import = torch.randn(1000)\n"
    (tmp_path / "fresh_models.py").write_text(source)
    overrides = SMALL + [f"model.name={tmp_path / 'fresh_models.py'}:BareVAE", "train.epochs=1", "seed=4"]
    first = train_spec(None, overrides, run_dir=tmp_path / "a", progress=False)
    second = train_spec(None, overrides, run_dir=tmp_path / "b", progress=False)
    assert first.metrics[0]["val_elbo"] == second.metrics[0]["val_elbo"]


def test_a_pyro_param_outside_the_module_is_named(data):
    class ParamVAE(user("BareVAE")):
        def model(self, batch):
            pyro.param("noise", torch.ones(1))  # trained by nothing ppvae saves: refused before training
            return super().model(batch)

    with pytest.raises(ValueError, match=r"pyro.param 'noise' is not a parameter of ParamVAE; ppvae trains and saves "
                                         r"the module's parameters, so make it one \(self.noise = nn.Parameter"):
        ppvae.train(ParamVAE(data.event_shape), data, epochs=1, progress=False, device="cpu")


def test_a_models_output_is_a_row_of_the_table_and_a_layer_named_output_is_no_declaration():
    from ppvae.inference.contract import OUTPUTS, output_of

    class WithLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.output = torch.nn.Linear(2, 2)  # a layer, not a declaration of what the model outputs

    assert output_of(WithLayer()) is OUTPUTS["images"]
    assert output_of(ppvae.VAE((4,), 2)) is OUTPUTS["images"]

    class Strings(torch.nn.Module):
        output = "strings"

    assert output_of(Strings()).text and not output_of(Strings()).derivable

    class Audio(torch.nn.Module):
        output = "audio"

    with pytest.raises(ValueError, match=r"^Audio.output is 'audio'; a model's output is one of 'images', 'strings'$"):
        output_of(Audio())
