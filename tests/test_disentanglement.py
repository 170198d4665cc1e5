"""The five disentanglement metrics on codes with known answers, the factor sources, the CLI verb and sweeps."""

import csv
import json

import numpy as np
import pytest
import torch

import ppvae
from ppvae.apps.sweep import cap_jobs, check_grid, parse_grid, sweep
from ppvae.cli import main
from ppvae.evaluate.disentanglement import (
    RenderedFactors,
    TableFactors,
    dci_from_importance,
    evaluate_codes,
    factor_source,
    headline,
    sap,
)

SIZES = (3, 5, 8, 10)
SOURCE = RenderedFactors(["a", "b", "c", "d"], SIZES, lambda f: torch.as_tensor(f, dtype=torch.float64))
ROTATION = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))[0]
SMALL = dict(num_train=2000, num_eval=1000, num_votes=400, dci_train=1000, dci_eval=500)


def perfect(x):
    return x.numpy() / np.array(SIZES)


def rotated(x):
    return (perfect(x) - 0.5) @ ROTATION


def ignores_the_factors(x):
    return np.random.default_rng(int(x.sum()) % 2**32).normal(size=(len(x), 4))


@pytest.fixture(scope="module")
def scores():
    return {name: headline(evaluate_codes(SOURCE, f, **SMALL))
            for name, f in (("perfect", perfect), ("rotated", rotated), ("random", ignores_the_factors))}


def test_codes_equal_to_the_factors_score_at_the_top(scores):
    s = scores["perfect"]
    assert s["beta_vae"] == pytest.approx(1.0) and s["factor_vae"] == pytest.approx(1.0)
    assert s["mig"] > 0.95  # 20 bins over factors of up to 10 values lose a little
    assert s["dci_disentanglement"] > 0.97 and s["dci_completeness"] > 0.97 and s["dci_informativeness"] > 0.99


def test_codes_independent_of_the_factors_score_at_the_bottom(scores):
    s = scores["random"]
    assert s["beta_vae"] < 0.4 and s["factor_vae"] < 0.45  # chance is 1/4
    assert s["mig"] < 0.02 and s["sap"] < 0.03
    assert s["dci_disentanglement"] < 0.1 and s["dci_informativeness"] < 0.3


def test_a_rotation_of_perfect_codes_lowers_mig_sap_and_dci_disentanglement(scores):
    p, r = scores["perfect"], scores["rotated"]
    assert r["mig"] < 0.5 * p["mig"]
    assert r["sap"] < 0.7 * p["sap"]
    assert r["dci_disentanglement"] < 0.6 * p["dci_disentanglement"]
    assert r["dci_informativeness"] > 0.9  # the information is all still there, spread over the dimensions


def test_sap_is_at_its_ceiling_for_binary_factors_and_by_correlation():
    """A 1-D linear SVM separates two classes exactly: binary factors copied into the code are predicted perfectly
    by their own dimension and at chance (1/2) by the others, so discrete SAP is at its ceiling, 1 - 1/2; for
    many-valued factors the continuous SAP (squared correlation) of a perfect code is 1."""
    binary = RenderedFactors(["a", "b", "c"], (2, 2, 2), lambda f: torch.as_tensor(f, dtype=torch.float64))
    f, x = binary.sample(1000, np.random.default_rng(0))
    g, y = binary.sample(500, np.random.default_rng(1))
    result = sap(x.numpy(), f, y.numpy(), g)
    assert np.diag(result["matrix"]) == pytest.approx(np.ones(3))
    assert result["score"] == pytest.approx(0.5, abs=0.06)
    f, x = SOURCE.sample(1000, np.random.default_rng(0))
    assert sap(x.numpy(), f, x.numpy(), f, continuous=True)["score"] > 0.95


def test_dci_of_known_importance_matrices():
    assert dci_from_importance(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-6)
    # two codes for one factor: each code is disentangled (D = 1), the factor is split over two codes (C < 1)
    d, c = dci_from_importance(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    assert d == pytest.approx(1.0) and c == pytest.approx(0.5 * (1 - np.log(2) / np.log(3)) + 0.5)


def test_a_metric_does_not_depend_on_which_others_ran():
    alone = evaluate_codes(SOURCE, rotated, metrics=("mig",), **SMALL)["mig"]["score"]
    assert alone == pytest.approx(headline(evaluate_codes(SOURCE, rotated, metrics=("mig", "sap"), **SMALL))["mig"])


def test_table_factors_sample_rows_with_the_requested_values():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 3, 500), rng.integers(0, 4, 500)], 1) * 10  # values 0, 10, 20, ...
    x = torch.as_tensor(factors, dtype=torch.float32)
    table = TableFactors(x, factors, ["p", "q"])
    assert table.sizes == (3, 4)
    f, obs = table.sample_given(np.array([1, 1, 0]), np.array([2, 3, 1]), rng)
    assert (f[:, 1][:2] == [2, 3]).all() and f[2, 0] == 1
    assert torch.equal(obs, torch.as_tensor(f * 10, dtype=torch.float32))


def test_bad_factor_data_is_refused_in_one_line(small_mnist):
    with pytest.raises(ValueError, match=r"factor column 1 \('q'\) is constant \(every example has value 7\)"):
        TableFactors(torch.zeros(5, 2), np.array([[0, 7], [1, 7], [2, 7], [0, 7], [1, 7]]), ["p", "q"])
    with pytest.raises(ValueError, match=r"has class labels of shape \(256,\), not an \(N, K\) matrix of ground-truth"):
        factor_source(small_mnist)
    unlabelled = ppvae.dataset_from_array(torch.rand(20, 1, 4, 4))
    with pytest.raises(ValueError, match=r"has no ground-truth factors \(no labels\)"):
        factor_source(unlabelled)
    with pytest.raises(ValueError, match=r"unknown disentanglement metric\(s\) mig2; choose from beta_vae"):
        evaluate_codes(SOURCE, perfect, metrics=("mig2",))


@pytest.fixture(scope="module")
def dsprites_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("dsprites") / "run"
    ppvae.train_spec({"data": {"name": "dsprites", "n": 1000}, "device": "cpu", "model": {"latent_dim": 4},
                      "encoder": {"hidden": [64]}, "decoder": {"hidden": [64]},
                      "train": {"epochs": 2, "figures": False}}, run_dir=path, progress=False)
    return path


def test_disentanglement_verb_writes_scores_with_sizes_and_seed(dsprites_run, capsys):
    args = ["--num-train", "500", "--num-eval", "300", "--num-votes", "50", "--dci-train", "200", "--dci-eval", "100"]
    assert main(["disentanglement", str(dsprites_run), *args, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "mig" in out and "dci_disentanglement" in out and "position_x (32)" in out
    scores = json.loads((dsprites_run / "disentanglement.json").read_text())
    assert scores["settings"]["seed"] == 3 and scores["settings"]["num_votes"] == 50
    assert scores["factor_names"] == ["shape", "scale", "orientation", "position_x", "position_y"]
    assert set(scores["summary"]) == {"beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement",
                                      "dci_completeness", "dci_informativeness"}
    assert all(0.0 <= v <= 1.0 for v in scores["summary"].values())
    assert np.asarray(scores["mutual_information"]).shape == (4, 5) and len(scores["dimension_factors"]) == 4
    for name in ("mutual_information.png", "factor_traversals.png"):
        assert (dsprites_run / "figures" / name).stat().st_size > 5000
    again = json.loads((dsprites_run / "disentanglement.json").read_text())
    assert main(["disentanglement", str(dsprites_run), *args, "--seed", "3", "--no-figures"]) == 0
    assert json.loads((dsprites_run / "disentanglement.json").read_text())["summary"] == again["summary"]


def test_disentanglement_verb_refuses_data_without_factors(digits_vae_run, capsys):
    assert main(["disentanglement", str(digits_vae_run)]) == 2
    assert "has class labels of shape" in capsys.readouterr().err


def test_grid_parsing_and_checks():
    assert parse_grid(["beta.value=1,2,4", "model.latent_dim=4,8"]) == {"beta.value": [1, 2, 4],
                                                                       "model.latent_dim": [4, 8]}
    with pytest.raises(ValueError, match="sweep grid key 'beta.valu': beta schedule 'constant' got unknown option"):
        check_grid(None, [], parse_grid(["beta.valu=1,2"]))
    with pytest.raises(ValueError, match=r"beta schedule 'constant' option value must be a number, got 'big'"):
        check_grid(None, [], parse_grid(["beta.value=1,big"]))
    with pytest.raises(ValueError, match=r"sweep grid key 'data.n': the value 2.5 is not an integer"):
        check_grid(None, ["data.name=dsprites"], parse_grid(["data.n=100,2.5"]))
    with pytest.raises(ValueError, match=r"unknown key 'epoch' in \[train\]"):
        check_grid(None, [], parse_grid(["train.epoch=1"]))
    with pytest.raises(ValueError, match=r"seeds are swept with --seeds"):
        parse_grid(["seed=1,2"])
    with pytest.raises(ValueError, match=r"must look like section.key=v1,v2"):
        parse_grid(["beta.value"])


def test_more_jobs_than_cores_are_capped_and_said(monkeypatch):
    monkeypatch.setattr("ppvae.apps.sweep.available_cores", lambda: 2)
    said = []
    assert cap_jobs(5, said.append) == 2
    assert said == ["--jobs 5 is more than the 2 CPU core(s) here; running 2 at a time"]
    assert cap_jobs(2, said.append) == 2 and len(said) == 1


def test_a_sweep_trains_every_combination_in_parallel_then_resumes(tmp_path, capsys):
    spec = {"data": {"name": "dsprites", "n": 300}, "device": "cpu", "model": {"latent_dim": 3},
            "encoder": {"hidden": [32]}, "decoder": {"hidden": [32]}, "train": {"epochs": 2, "figures": False}}
    metrics = {"num_train": 300, "num_eval": 200, "num_votes": 20, "dci_train": 100, "dci_eval": 100,
               "figures": False}
    said = []
    rows = sweep(spec, {"beta.value": [1, 4]}, seeds=2, jobs=2, out=tmp_path / "sw", metric_options=metrics,
                 say=said.append)
    assert [(r["beta.value"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (4, 0), (4, 1)]
    assert all(r["epochs"] == 2 and r["mig"] is not None and r["val_tc"] is not None for r in rows)
    assert ppvae.load_spec(tmp_path / "sw" / "beta.value=4-seed1" / "spec.toml")["beta"]["value"] == 4.0
    table = list(csv.DictReader(open(tmp_path / "sw" / "summary.csv")))
    assert len(table) == 4 and {"beta.value", "seed", "val_recon", "val_kl", "mig", "sap"} <= set(table[0])
    assert (tmp_path / "sw" / "figures" / "sweep.png").stat().st_size > 10000
    said.clear()
    again = sweep(spec, {"beta.value": [1, 4]}, seeds=2, jobs=1, out=tmp_path / "sw", metric_options=metrics,
                  say=said.append)
    assert sum("skipped (finished), metrics kept" in s for s in said) == 4
    assert again == rows


def test_sweep_cli_refuses_a_bad_grid_before_training(tmp_path, capsys):
    assert main(["sweep", "--grid", "prior.scal=1,2", "--set", "prior.name=laplace", "--out", str(tmp_path / "s")]) == 2
    assert "sweep grid key 'prior.scal': prior 'laplace' got unknown option(s) scal; it accepts: scale" in \
        capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_grid_over_a_kl_rewriting_objective_is_checked_before_any_run_trains():
    with pytest.raises(ValueError, match=r"sweep grid objective.threshold=-1: beta threshold must be >= 0, got -1"):
        check_grid(None, ["objective.name=free_bits"], parse_grid(["objective.threshold=1,-1"]))
    with pytest.raises(ValueError, match=r"objective 'tcvae' rewrites the KL term with its own weights, so beta must "
                                         r"stay constant 1"):
        check_grid(None, ["objective.name=tcvae"], parse_grid(["beta.value=1,4"]))
    check_grid(None, ["objective.name=tcvae"], parse_grid(["objective.beta=1,6"]))  # a valid grid passes
