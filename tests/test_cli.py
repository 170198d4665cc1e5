"""The command line end to end on a tiny setting, checking the files it writes."""

import csv
import json
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import TINY

import ppvae
from ppvae.cli import main

FIGURES = {"reconstructions.png", "samples.png", "interpolation_linear.png", "interpolation_spherical.png",
           "training_curve.png", "kl_decomposition.png"}  # the stock VAE's KL splits into MI, TC, dim-KL


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
    assert spec["model"] == {"name": "vae", "event_shape": [1, 28, 28], "latent_dim": 4}
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["beta"]) == 2.0
    assert float(rows[-1]["val_elbo"]) > float(rows[0]["val_elbo"]) - 5  # tiny run: no collapse of learning


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
    # the trainer's last epoch logged the same seeded estimate on the validation split, not on the test split
    last = list(csv.DictReader(open(run_dir / "metrics.csv")))[-1]
    run = ppvae.load_run(run_dir)
    assert ppvae.evaluate_elbo(run.model, run.data.val)["elbo"] == pytest.approx(float(last["val_elbo"]), rel=1e-6)
    assert report["checkpoint"] == {"file": "checkpoint.pt", "epoch": 2, "trained_epochs": 2, "still_training": False}


def test_resume_from_the_cli(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--set", "train.epochs=3", "--quiet"]) == 0
    assert len(list(csv.DictReader(open(copy / "metrics.csv")))) == 3
    assert "trained 1 epochs (to epoch 3)" in capsys.readouterr().out
    assert main(["train", "--resume", str(copy), "--set", "train.epochs=3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train: " in out and "has finished its 3 epochs" in out and "--set train.epochs=13" in out
    assert main(["train", "--resume", str(copy), "--set", "train.epochs=2", "--quiet"]) == 2
    assert "has already trained 3 epochs, more than train.epochs = 2" in capsys.readouterr().err
    assert main(["train", "--resume", str(copy), "--set", "prior=vamp", "--set", "train.epochs=4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ("cannot be rebuilt exactly: the spec rebuilds a different network: module ('prior', "
            "'ppvae.components.priors.StandardNormal') was trained, the spec gives ('prior', "
            "'ppvae.components.priors.VampPrior')") in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["sample", "RUN", "-n", "0"], "argument -n: must be >= 1, got 0"),
    (["evaluate", "RUN", "--max-examples", "-5"], "argument --max-examples: must be >= 2, got -5"),
    (["evaluate", "RUN", "-k", "many"], "argument -k/--num-samples: expected an integer >= 1, got 'many'"),
    (["interpolate", "RUN", "--steps", "1"], "argument --steps: must be >= 2, got 1"),
])
def test_cli_refuses_counts_out_of_range(run_dir, argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main([str(run_dir) if a == "RUN" else a for a in argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_cli_errors_name_the_limit(run_dir, tmp_path, capsys):
    assert main(["interpolate", str(run_dir), "--pairs", "65"]) == 2
    assert "--pairs 65 needs 130 test examples; this run's test set has 128, so at most --pairs 64" in \
        capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--run-dir", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--resume RUN continues in RUN; it cannot be combined with --run-dir" in capsys.readouterr().err
    # a run directory that already holds a run is not overwritten by a new one
    before = (run_dir / "checkpoint.pt").read_bytes()
    assert main(["train", *_sets(TINY + ["train.epochs=1"]), "--run-dir", str(run_dir), "--quiet"]) == 2
    assert "already holds a trained run; continue it with `ppvae train --resume" in capsys.readouterr().err
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    # a damaged checkpoint is one line, not a traceback
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "checkpoint.pt").write_bytes(b"")
    assert main(["sample", str(broken)]) == 2
    assert "is unreadable or corrupt (EOFError" in capsys.readouterr().err


def test_failed_resume_leaves_the_run_directory_as_it_was(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    files = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(copy), "--set", "model.latent_dim=8", "--quiet"]) == 2
    assert "parameter ('prior.loc', [4]) was trained, the spec gives ('prior.loc', [8])" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == files
    assert main(["sample", str(copy), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0  # still loads


def test_nan_loss_is_one_line_and_keeps_nothing_half_written(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", *_sets(TINY + ["train.epochs=2", "optimizer.name=sgd", "optimizer.lr=1e6"]),
            "--run-dir", str(run), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppvae train: error: the loss became nan at epoch 1") and "no checkpoint was written" in err
    assert not run.exists()  # nothing half-made to trip over: no spec.toml without a checkpoint


def test_run_files_get_the_usual_permissions(run_dir):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("spec.toml", "checkpoint.pt", "metrics.csv"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "prior.name=gauss"], "unknown prior 'gauss'; choose one of: conditional, flow, laplace"),
    (["train", "--set", "data.name=cifar"], "unknown dataset 'cifar'; choose one of: bible, digits, dsprites, "
                                            "fashion-mnist, file, folder, fortunes, mnist"),
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


def test_interrupt_says_whether_there_is_anything_to_resume(tmp_path, monkeypatch, capsys):
    from ppvae.inference.train import Trainer

    real = Trainer._train_epoch

    def stop_in_epoch(after):
        def epoch(self, bar):
            if self.epoch == after:
                raise KeyboardInterrupt
            real(self, bar)
        return epoch

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_epoch(0))
    argv = ["train", *_sets(TINY + ["train.epochs=3", "train.figures=false"]), "--quiet"]
    assert main(argv + ["--run-dir", str(tmp_path / "a")]) == 130
    assert "interrupted before the first epoch finished: nothing was saved" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_epoch(1))
    assert main(argv + ["--run-dir", str(tmp_path / "b")]) == 130
    out, err = capsys.readouterr()
    assert f"run directory: {tmp_path / 'b'}" in out  # named up front, also with --quiet
    assert f"the checkpoint of the last finished epoch is intact: continue with `ppvae train --resume " \
           f"{tmp_path / 'b'}`" in err
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    assert main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))) == 3


def test_version_and_stale_report_figures(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("ppvae ")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["evaluate", str(copy), "-k", "30", "--max-examples", "50"]) == 0
    assert (copy / "figures" / "khat_histogram.png").exists()
    assert main(["evaluate", str(copy), "-k", "5", "--max-examples", "50"]) == 0  # no PSIS at K = 5
    assert not (copy / "figures" / "khat_histogram.png").exists()  # not left over from the K = 30 report
    assert main(["evaluate", str(copy), "--device", "tpu"]) == 2
    assert "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'" in capsys.readouterr().err


def test_help_and_a_refused_command_line_answer_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom ppvae.cli import main\n"
            "for argv in (['--help'], ['train', '--nproc', 'x']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'pyro', 'matplotlib', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_evaluate_shows_its_progress_on_stderr_and_quiet_shows_none(run_dir, capsys):
    argv = ["evaluate", str(run_dir), "-k", "25", "--max-examples", "50", "--no-figures"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "evaluate: 100%" in err and "IWAE log-likelihood, K=25" in err and "PSIS k-hat" in err
    assert "%|" not in out and "evaluated 50 test examples" in out
    assert main(argv + ["--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "%|" not in err and "evaluated 50 test examples" in out
    for verb in ("disentanglement", "molecules", "sweep", "anomaly"):  # every long verb takes --quiet
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "--quiet no progress bars" in " ".join(capsys.readouterr().out.split())


def test_every_verb_that_reads_a_run_chooses_its_checkpoint_the_same_way():
    """best.pt where the run kept one (--checkpoint auto), else the latest: never one verb's weights and another's."""
    import importlib

    from ppvae.cli import VERBS

    readers = [v for v in VERBS if "run" in importlib.import_module(f"ppvae.cli.{v}").FLAGS]
    assert {"evaluate", "sample", "export", "anomaly", "molecules"} <= set(readers)
    for verb in readers:
        assert "checkpoint" in importlib.import_module(f"ppvae.cli.{verb}").FLAGS, verb
