"""Property-based fuzzing: every spec and every Python call is either served or refused in one clear line.

Strategies draw whole specs (every section; valid names and options, then at most one known-bad value: an
unknown name, a wrong type, a boundary such as 0, -1, 2.5, NaN or a bool where a number goes) and Python API
calls, each run on tiny data for one epoch. The property: a valid draw trains, its resolved spec round-trips
through spec.toml, and the run directory rebuilds the very program that was trained (the same ELBO, bit for
bit); a draw with a bad value raises ``ValueError`` (ppvae's errors are ValueErrors) in one line naming the bad
key or value; nothing else: no other exception type, no NaN saved as a good checkpoint.

Profiles (``tests/conftest.py``): ``ci`` (the default; derandomized, a fixed number of examples), ``thorough``
(``pytest tests/test_fuzz.py --hypothesis-profile thorough``: ten times as many, random).
"""

import contextlib
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ppvae
from ppvae.evaluate.elbo import evaluate_elbo
from ppvae.inference.checkpoint import CHECKPOINT, load_checkpoint
from ppvae.inference.train import NonFiniteLossError

BAD_INTS = [0, -1, 2.5, True, "3", float("nan")]
BAD_FLOATS = [float("nan"), float("inf"), -1.0, "x", True]

DATA = {"name": "digits", "limit_train": 48, "limit_test": 16}
TINY_NETS = {"encoder": {"name": "mlp", "hidden": [16]}, "decoder": {"name": "mlp", "hidden": [16]}}


@st.composite
def valid_specs(draw):
    """Specs ppvae should serve (or refuse as a combination, in one line)."""
    prior = draw(st.sampled_from([{"name": "normal"}, {"name": "laplace"}, {"name": "learned_normal"},
                                  {"name": "student_t"},
                                  {"name": "mixture", "components": draw(st.integers(1, 3))},
                                  {"name": "vamp", "components": draw(st.integers(1, 4))}, {"name": "flow"}]))
    likelihood = draw(st.sampled_from(["bernoulli", "gaussian", "continuous_bernoulli", "laplace"]))
    beta = draw(st.sampled_from([
        {"name": "constant", "value": draw(st.floats(0.0, 4.0))},
        {"name": "linear", "warmup_epochs": draw(st.integers(1, 3))},
        {"name": "cyclical"}, {"name": "capacity"}, {"name": "free_bits"}, {"name": "tcvae"}]))
    objective = draw(st.sampled_from([{"name": "Trace_ELBO"}, {"name": "TraceMeanField_ELBO"},
                                      {"name": "TraceGraph_ELBO"},
                                      {"name": "IWAE", "num_particles": draw(st.integers(1, 3))},
                                      {"name": "Trace_ELBO", "num_particles": 2}]))
    return {
        "seed": draw(st.integers(0, 2**31 - 1)), "device": "cpu",
        "data": dict(DATA),
        "model": {"name": draw(st.sampled_from(["vae", "vae", "cvae"])), "latent_dim": draw(st.integers(1, 4))},
        **TINY_NETS,
        "guide": {"name": draw(st.sampled_from(["normal", "normal", "iaf"]))},
        "prior": prior, "likelihood": {"name": likelihood}, "beta": beta, "objective": objective,
        "optimizer": {"name": draw(st.sampled_from(["adam", "adamw", "rmsprop", "sgd"])),
                      "lr": draw(st.floats(1e-5, 1e-3))},
        "train": {"epochs": 1, "batch_size": draw(st.integers(1, 64)), "figures": False,
                  "progress_every": draw(st.integers(1, 20)), "keep_checkpoints": draw(st.integers(1, 3))},
    }


# (section, key, bad values, what the message must name)
MUTATIONS = [
    ("train", "epochs", BAD_INTS, "epochs"), ("train", "batch_size", BAD_INTS, "batch_size"),
    ("train", "progress_every", BAD_INTS, "progress_every"),
    ("train", "keep_checkpoints", BAD_INTS, "keep_checkpoints"),
    ("train", "figures", [1, "yes"], "figures"), ("train", "bogus", [1], "bogus"),
    ("model", "latent_dim", BAD_INTS, "latent_dim"), ("model", "name", ["nope", "no_module:Thing"], "nope|no_module"),
    ("prior", "name", ["gaussian_mixture", ""], "gaussian_mixture|prior"),
    ("likelihood", "name", ["poisson"], "poisson"),
    ("beta", "name", ["warmup"], "warmup"), ("objective", "name", ["ELBO"], "ELBO"),
    ("optimizer", "name", ["lbfgs"], "lbfgs"), ("optimizer", "lr", BAD_FLOATS + [0.0], "lr"),
    ("data", "name", ["cifar"], "cifar"), ("data", "limit_train", [0, -5, 1.5], "limit_train"),
    ("data", "stream", ["maybe"], "stream"), ("guide", "name", ["delta"], "delta"),
    ("encoder", "hidden", [[0], [-3], "wide"], "hidden"),
    ("", "seed", [1.5, "zero", True], "seed"), ("", "device", ["gpu", "tpu:0"], "device"),
    ("", "nonsense", [1], "nonsense"),
]


@st.composite
def mutated_specs(draw):
    spec = draw(valid_specs())
    section, key, values, names = draw(st.sampled_from(MUTATIONS))
    value = draw(st.sampled_from(values))
    if section:
        spec[section] = {**spec[section], key: value}
    else:
        spec[key] = value
    return spec, key, value, names


def _one_line(e: BaseException) -> str:
    message = str(e)
    assert message and "\n" not in message.strip(), f"{type(e).__name__} over several lines: {message!r}"
    assert "Traceback" not in message
    return message


def _train(spec):
    run_dir = Path(tempfile.mkdtemp(prefix="fuzz-")) / "run"
    try:
        return ppvae.train_spec(spec, run_dir=run_dir, progress=False), run_dir
    except BaseException:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
        raise


def _check_trained(run, run_dir):
    try:
        state = load_checkpoint(run_dir / CHECKPOINT)
        assert all(math.isfinite(v) for m in state["metrics"] for k, v in m.items() if isinstance(v, float)), \
            "a non-finite metric was saved as a good checkpoint"
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
        # the resolved spec round-trips through spec.toml ...
        assert ppvae.load_spec(run_dir / "spec.toml") == run.spec
        # ... and the run directory rebuilds the program that was trained: the same number, bit for bit
        loaded = ppvae.load_run(run_dir)
        test = run.data.batch("test")
        assert evaluate_elbo(loaded.model, test, seed=1)["elbo"] == evaluate_elbo(run.model, test, seed=1)["elbo"]
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)


@settings(FUZZ, max_examples=settings().max_examples * 2)
@given(valid_specs())
def test_a_valid_spec_trains_round_trips_and_rebuilds_or_is_refused_in_one_line(spec):
    try:
        run, run_dir = _train(spec)
    except (ValueError, NonFiniteLossError) as e:  # a combination ppvae cannot train, said so
        event(f"refused: {str(e)[:60]}")
        _one_line(e)
        return
    event("trained")
    _check_trained(run, run_dir)


@FUZZ
@given(mutated_specs())
def test_a_bad_value_anywhere_in_a_spec_is_refused_in_one_line_naming_it(case):
    spec, key, value, names = case
    with pytest.raises(ValueError) as info:
        run, run_dir = _train(spec)
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    message = _one_line(info.value)
    assert any(n in message for n in names.split("|")) or repr(value) in message, (key, value, message)


# ---- the Python API ------------------------------------------------------------------------------------------
_DATA = {}


def _data():
    if not _DATA:
        _DATA["d"] = ppvae.load_dataset("digits", limit_train=48, limit_test=16)
    return _DATA["d"]


ARGS = {  # argument -> (valid values, bad values)
    "epochs": ([1], BAD_INTS), "batch_size": ([1, 16, 100], BAD_INTS),
    "beta": ([0.0, 1.0, 4.0, "linear", {"name": "cyclical"}], [-1.0, float("nan"), "warmup", {"name": "x"}]),
    "objective": (["Trace_ELBO", "TraceMeanField_ELBO", {"name": "IWAE", "num_particles": 2}], ["ELBO", 3]),
    "optimizer": ([{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 1e-4}],
                  [{"name": "adam", "lr": -1.0}, {"name": "nadam"}, "adam"]),
    "seed": ([0, 12345], [1.5, "a"]), "device": (["cpu"], ["gpu"]),
}


@st.composite
def train_calls(draw):
    kwargs = {k: draw(st.sampled_from(good)) for k, (good, _) in ARGS.items()}
    bad = draw(st.sampled_from([None, *ARGS]))
    if bad is not None:
        kwargs[bad] = draw(st.sampled_from(ARGS[bad][1]))
    latent = draw(st.sampled_from([1, 3]))
    return kwargs, bad, latent


@FUZZ
@given(train_calls())
def test_python_train_calls_train_or_are_refused_in_one_line_naming_the_argument(call):
    kwargs, bad, latent = call
    data = _data()
    model = ppvae.VAE(data.event_shape, latent, encoder={"name": "mlp", "hidden": [16]},
                      decoder={"name": "mlp", "hidden": [16]}, likelihood="continuous_bernoulli")
    if bad is None:
        run = ppvae.train(model, data, progress=False, figures=False, **kwargs)
        assert len(run.metrics) == kwargs["epochs"] and math.isfinite(run.metrics[-1]["val_elbo"])
        return
    with pytest.raises(ValueError) as info:
        ppvae.train(model, data, progress=False, figures=False, **kwargs)
    message = _one_line(info.value)
    names = {"objective": ["objective", "ELBO", "3"], "optimizer": ["optimizer", "lr", "nadam"],
             "beta": ["beta", "warmup", "'x'", "value"]}.get(bad, [bad])
    assert any(n in message for n in names), (bad, kwargs[bad], message)


@FUZZ
@given(latent=st.sampled_from([0, -1, 2.5, "4", True, 1, 2]), prior=st.sampled_from(["normal", "mixture", "nope"]),
       likelihood=st.sampled_from(["bernoulli", "gaussian", "poisson"]))
def test_the_vae_constructor_builds_or_refuses_in_one_line(latent, prior, likelihood):
    data = _data()
    bad = latent not in (1, 2) or isinstance(latent, bool) or prior == "nope" or likelihood == "poisson"
    if not bad:
        vae = ppvae.VAE(data.event_shape, latent, prior=prior, likelihood=likelihood)
        assert vae.latent_dim == latent
        return
    with pytest.raises(ValueError) as info:
        ppvae.VAE(data.event_shape, latent, prior=prior, likelihood=likelihood)
    message = _one_line(info.value)
    assert any(n in message for n in ("latent_dim", "nope", "poisson")), message


_TRAINED = {}


def _trained():
    if not _TRAINED:
        data = _data()
        vae = ppvae.VAE(data.event_shape, 2, encoder={"name": "mlp", "hidden": [16]},
                        decoder={"name": "mlp", "hidden": [16]})
        ppvae.train(vae, data, epochs=1, progress=False, figures=False, device="cpu")
        _TRAINED["vae"] = vae
    return _TRAINED["vae"], _data()


@FUZZ
@given(steps=st.sampled_from([0, 1, 2, 5, -1, 2.5, "3", True]),
       method=st.sampled_from(["linear", "spherical", "cubic"]), pairs=st.sampled_from([1, 3]))
def test_interpolate_serves_or_refuses_in_one_line(steps, method, pairs):
    vae, data = _trained()
    x0, x1 = data.test[:pairs], data.test[pairs:2 * pairs]
    ok = isinstance(steps, int) and not isinstance(steps, bool) and steps >= 2 and method != "cubic"
    if ok:
        out = ppvae.interpolate(vae, x0, x1, steps=steps, method=method)
        assert out.shape[:2] == (pairs, steps) and torch.isfinite(out).all()
        return
    with pytest.raises(ValueError) as info:
        ppvae.interpolate(vae, x0, x1, steps=steps, method=method)
    message = _one_line(info.value)
    assert "steps" in message or "cubic" in message, message


@FUZZ
@given(num_samples=st.sampled_from([1, 3, 0, -2, 1.5]), posterior_draws=st.sampled_from([1, 5, 0, -1]))
def test_evaluate_model_serves_or_refuses_in_one_line(num_samples, posterior_draws):
    from ppvae.evaluate.report import evaluate_model

    vae, data = _trained()
    ok = isinstance(num_samples, int) and num_samples >= 1 and posterior_draws >= 1
    if ok:
        report, _ = evaluate_model(vae, data.test, num_samples=num_samples, posterior_draws=posterior_draws)
        assert report["iwae_log_likelihood"]["value"] >= report["elbo"]["elbo"] - 5.0
        return
    with pytest.raises(ValueError) as info:
        evaluate_model(vae, data.test, num_samples=num_samples, posterior_draws=posterior_draws)
    message = _one_line(info.value)
    assert "num_samples" in message or "posterior_draws" in message, message


# ---- the command line ----------------------------------------------------------------------------------------
BAD_CLI = {  # option -> bad values (each verb below takes the option)
    "-n": ["0", "-3", "x", "1.5"], "--seed": ["x", "1.5"], "--device": ["gpu", "cuda:x"],
    "--steps": ["1", "-2", "many"], "--temperature": ["0", "-1", "nan", "inf", "hot"], "--factor": ["3", "x"],
    "--mask": ["bogus"], "--label": ["99", "x"], "-k": ["0", "x"], "--method": ["cubic"], "--pairs": ["0"],
    "--max-examples": ["0"],
}
VERBS = {"sample": ["-n", "--seed", "--device", "--temperature", "--label"],
         "reconstruct": ["-n", "--seed", "--device"],
         "interpolate": ["--steps", "--method", "--pairs", "--seed", "--device"],
         "inpaint": ["--mask", "-k", "-n", "--max-examples", "--steps"],
         "upscale": ["--factor", "-k", "-n", "--max-examples"],
         "evaluate": ["--device", "--seed"]}
_RUN = {}


def _cli_run():
    if not _RUN:
        run_dir = Path(tempfile.mkdtemp(prefix="fuzz-cli-")) / "run"
        ppvae.train_spec({"device": "cpu", "data": dict(DATA), "model": {"latent_dim": 2}, **TINY_NETS,
                          "train": {"epochs": 1, "figures": False}}, run_dir=run_dir, progress=False)
        _RUN["dir"] = run_dir
    return _RUN["dir"]


@st.composite
def bad_command_lines(draw):
    verb = draw(st.sampled_from(sorted(VERBS)))
    where = draw(st.sampled_from(["run", "missing", "not-a-run"]))
    option = draw(st.sampled_from(VERBS[verb])) if where == "run" else None
    value = draw(st.sampled_from(BAD_CLI[option])) if option else None
    return verb, where, option, value


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(bad_command_lines())
def test_a_bad_command_line_exits_2_with_one_line_naming_it(capsys, line):  # capsys is read (emptied) every example
    from ppvae.cli import main

    verb, where, option, value = line
    run = {"run": _cli_run(), "missing": Path("/nonexistent/run"), "not-a-run": Path(tempfile.gettempdir())}[where]
    argv = [verb, str(run), *([option, value] if option else []), "--out", str(Path(tempfile.mkdtemp()) / "o.png")] \
        if verb not in ("evaluate",) else [verb, str(run), *([option, value] if option else [])]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusal: usage, then one error line
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    event(f"{where} {option}")
    assert code == 2, (argv, code, err)
    assert err and "Traceback" not in "\n".join(err), err
    last = err[-1]
    assert last.startswith(("ppvae", "usage")) and "error:" in last, err
    if option:
        names = {option, option.lstrip("-"), option.lstrip("-").replace("-", "_"), value,
                 {"--label": "label", "--device": "device", "-k": "num-samples"}.get(option, option)}
        assert any(n in last for n in names), (argv, last)
    else:
        assert str(run) in last or "run directory" in last or "spec.toml" in last, (argv, last)


# ---- positional mistakes and swapped arguments in the public API ---------------------------------------------
def _public_calls():
    """Each public call with valid positional arguments: (name, function, args)."""
    vae, data = _trained()
    run_dir = _api_run()
    x = data.test[:4]
    return {
        "train": (lambda *a: ppvae.train(*a, epochs=1, progress=False, figures=False), [vae, data]),
        "interpolate": (ppvae.interpolate, [vae, x[:2], x[2:], 3, "linear"]),
        "evaluate_elbo": (ppvae.evaluate_elbo, [vae, x]),
        "load_dataset": (ppvae.load_dataset, ["digits"]),
        "dataset_from_array": (ppvae.dataset_from_array, [torch.rand(10, 4), torch.arange(10) % 2]),
        "generate": (vae.generate, [4]),
        "reconstruct": (vae.reconstruct, [x]),
        "encode": (vae.encode, [x]),
        "decode": (vae.decode, [torch.zeros(3, 2)]),
        "load_run": (ppvae.load_run, [run_dir]),
        "export": (ppvae.export, [run_dir, run_dir.parent / "model.pt"]),
        "load": (ppvae.load, [run_dir.parent / "model.pt"]),
        "VAE": (ppvae.VAE, [data.event_shape, 2]),
    }


_API_RUN = {}


def _api_run():
    if not _API_RUN:
        run_dir = Path(tempfile.mkdtemp(prefix="fuzz-api-")) / "run"
        ppvae.train_spec({"data": DATA, **TINY_NETS, "model": {"name": "vae", "latent_dim": 2},
                          "train": {"epochs": 1, "figures": False}}, run_dir=run_dir, progress=False)
        ppvae.export(run_dir, run_dir.parent / "model.pt")
        _API_RUN["dir"] = run_dir
    return _API_RUN["dir"]


def _wrong_values():
    vae, data = _trained()
    return {"a tensor": data.test[:3], "a model": vae, "a dataset": data, "a string": "4", "an int": 3,
            "a float": 2.5, "None": None, "a list": [1, 2], "a path": Path("no/such/run"), "a bool": True}


@st.composite
def mistaken_calls(draw):
    name = draw(st.sampled_from(sorted(_public_calls())))
    args = list(_public_calls()[name][1])
    how = draw(st.sampled_from(["swap", "replace", "drop"] if len(args) > 1 else ["replace"]))
    if how == "swap":
        i, j = draw(st.sampled_from([(i, j) for i in range(len(args)) for j in range(i + 1, len(args))]))
        args[i], args[j] = args[j], args[i]
        what = f"arguments {i} and {j} swapped"
    elif how == "drop":
        i = draw(st.sampled_from(range(1, len(args))))
        args = args[:i]
        what = f"only {i} argument(s)"
    else:
        i = draw(st.sampled_from(range(len(args))))
        kind = draw(st.sampled_from(sorted(_wrong_values())))
        args[i] = _wrong_values()[kind]
        what = f"argument {i} is {kind}"
    return name, args, what


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mistaken_calls())
def test_a_positional_mistake_in_the_public_api_is_served_or_refused_in_one_line(call):
    """Swapped, missing or wrong-typed positional arguments: the call either works (some swaps are valid) or
    raises ValueError or TypeError in one line; never an AttributeError, IndexError or a torch error from inside."""
    name, args, what = call
    event(f"{name}: {what}")
    fn = _public_calls()[name][0]
    try:
        with tempfile.TemporaryDirectory() as where, contextlib.chdir(where):  # a path argument writes there
            fn(*args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        _one_line(e)
        assert "object has no attribute" not in str(e) and "not iterable" not in str(e), (name, what, str(e))
