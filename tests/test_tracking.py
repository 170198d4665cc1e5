"""Experiment tracking: TensorBoard event files and a local MLflow store, read back."""

import os

import pytest

import ppvae
from ppvae.cli import main

tensorboard = pytest.importorskip("tensorboard", reason="the tracking extra is not installed (pip install -e "
                                                        "'.[tracking]')")
mlflow = pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install -e '.[tracking]')")

SPEC = {"device": "cpu", "data": {"name": "digits", "limit_train": 200, "limit_test": 50}, "model": {"latent_dim": 3},
        "train": {"epochs": 3, "figures": True, "loggers": ["csv", "tensorboard", "mlflow"], "log_images_every": 2}}


def test_tensorboard_and_mlflow_hold_the_run(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "runs" / "a"
    ppvae.train_spec(SPEC, run_dir=run_dir, progress=False)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    elbo = [e.value for e in events.Scalars("test_elbo")]
    assert [e.step for e in events.Scalars("test_elbo")] == [1, 2, 3]
    assert elbo == pytest.approx([m["test_elbo"] for m in ppvae.load_run(run_dir).metrics])
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("samples")] == [2, 3]  # every 2 epochs, and the last
    assert "spec/text_summary" in events.Tags()["tensors"]

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=f"file:{tmp_path / 'runs' / 'mlruns'}")
    (found,) = client.search_runs([client.get_experiment_by_name("ppvae").experiment_id])
    assert found.info.status == "FINISHED" and found.data.params["model.latent_dim"] == "3"
    history = client.get_metric_history(found.info.run_id, "test_elbo")
    assert [m.step for m in history] == [1, 2, 3] and history[-1].value == pytest.approx(elbo[-1])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"checkpoint.pt", "spec.toml", "metrics.csv", "figures"} <= artifacts

    # a resumed run goes on in the same MLflow run
    ppvae.resume(run_dir, ["train.epochs=4"], progress=False)
    assert [m.step for m in client.get_metric_history(found.info.run_id, "test_elbo")] == [1, 2, 3, 4]
    assert len(client.search_runs([client.get_experiment_by_name("ppvae").experiment_id])) == 1


def test_an_unknown_logger_is_refused_in_one_line(tmp_path, capsys):
    assert main(["train", "--set", "train.loggers=['csv','wandb']", "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == ("ppvae train: error: unknown logger 'wandb' in train.loggers; choose "
                                               "from csv, tensorboard, mlflow")
    assert main(["train", "--set", "train.loggers='tensorboard'"]) == 2
    assert "train.loggers must be list" in capsys.readouterr().err


def test_a_logger_that_is_not_installed_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    argv = ["train", "--set", "data.name=digits", "--set", "data.limit_train=100", "--set", "train.epochs=1",
            "--set", "train.loggers=['tensorboard']", "--set", "train.figures=false", "--run-dir", str(tmp_path / "r"),
            "--quiet"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == ("ppvae train: error: train.loggers asks for tensorboard, which is not "
                                               "installed: pip install -e '.[tracking]' (or pip install tensorboard)")
