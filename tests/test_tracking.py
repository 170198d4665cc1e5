"""Experiment tracking: TensorBoard event files and a local MLflow store, read back, and the README's `mlflow ui`
serving the store."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from guide import guide_text

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
    elbo = [e.value for e in events.Scalars("val_elbo")]
    assert [e.step for e in events.Scalars("val_elbo")] == [1, 2, 3]
    assert elbo == pytest.approx([m["val_elbo"] for m in ppvae.load_run(run_dir).metrics])
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("samples")] == [2, 3]  # every 2 epochs, and the last
    assert "spec/text_summary" in events.Tags()["tensors"]

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=f"file:{tmp_path / 'runs' / 'mlruns'}")
    (found,) = client.search_runs([client.get_experiment_by_name("ppvae").experiment_id])
    assert found.info.status == "FINISHED" and found.data.params["model.latent_dim"] == "3"
    history = client.get_metric_history(found.info.run_id, "val_elbo")
    assert [m.step for m in history] == [1, 2, 3] and history[-1].value == pytest.approx(elbo[-1])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"checkpoint.pt", "spec.toml", "metrics.csv", "figures"} <= artifacts

    # a resumed run goes on in the same MLflow run
    ppvae.resume(run_dir, ["train.epochs=4"], progress=False)
    assert [m.step for m in client.get_metric_history(found.info.run_id, "val_elbo")] == [1, 2, 3, 4]
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


def test_the_readmes_mlflow_ui_serves_the_runs(tmp_path, monkeypatch):
    """The README's `mlflow ui` command, on a free loopback port, serves the UI's page and lists the store's
    experiment: the tracking extra installs the full mlflow (mlflow-skinny has neither the server's packages,
    Flask and SQLAlchemy among them, nor the page)."""
    from mlflow.tracking import MlflowClient

    readme = guide_text()
    (store,) = re.findall(r"MLFLOW_ALLOW_FILE_STORE=true \.venv/bin/mlflow ui --backend-store-uri (\S+)", readme)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{tmp_path / store}")  # a store as the mlflow logger writes one
    run = client.create_run(client.create_experiment("ppvae"))
    client.log_metric(run.info.run_id, "val_elbo", -100.0, step=1)
    client.set_terminated(run.info.run_id)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "mlflow-ui.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", store,
                                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"mlflow ui exited with {server.returncode}:\n{log.read_text()[-3000:]}"
            try:
                page = urllib.request.urlopen(url + "/", timeout=5).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"mlflow ui did not answer in 60 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        assert page.lower().startswith("<!doctype html>") and "Unable to display MLflow UI" not in page, page[:500]
        found = json.loads(urllib.request.urlopen(url + "/ajax-api/2.0/mlflow/experiments/search?max_results=100",
                                                  timeout=10).read())
        assert "ppvae" in [e["name"] for e in found["experiments"]]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
