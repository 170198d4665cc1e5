"""What survives a crash: checkpoints killed mid-write, corrupted afterwards or refused by a full disk; and
what is deterministic."""

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.inference.checkpoint import CHECKPOINT, load_checkpoint, load_latest
from ppvae.inference.lock import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 8
TINY = ["data.name=digits", "data.limit_train=256", "data.limit_test=64", "model.latent_dim=4",
        "encoder.hidden=[32]", "decoder.hidden=[32]", "train.batch_size=64", "train.figures=false", "device=cpu",
        "seed=5"]


def _sets(extra=()):
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def _spec(extra=()):
    return ppvae.load_spec(None, [*TINY, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's final weights."""
    run = tmp_path_factory.mktemp("ref") / "run"
    ppvae.train_spec(_spec([f"train.epochs={EPOCHS}"]), run_dir=run, progress=False)
    return load_checkpoint(run / CHECKPOINT)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_at_random_moments_never_loses_more_than_an_epoch_and_resumes_to_the_same_weights(tmp_path, reference):
    """20 trials: SIGKILL at a random moment of a random epoch; in half of them every write pauses half-way
    through its file (PPVAE_FAULT_STALL_WRITE), so the kill often lands inside the checkpoint write."""
    rng = random.Random(0)
    outcomes = {"no checkpoint yet": 0, "killed while training": 0}
    for trial in range(20):
        run = tmp_path / f"t{trial}"
        stall = trial % 2 == 1
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "PPVAE_FAULT_STALL_WRITE": "0.05" if stall else ""}
        child = subprocess.Popen([sys.executable, "-m", "ppvae", "train", *_sets([f"train.epochs={EPOCHS}"]),
                                  "--run-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, env=env)
        at_epoch, delay = rng.randrange(0, EPOCHS - 1), rng.uniform(0.0, 0.12)
        printed = 0
        for line in child.stdout:
            if line.startswith("epoch "):
                printed = int(line.split()[1])
            if printed >= at_epoch and (printed or line.startswith("run directory")):
                break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        rest = child.stdout.read()
        printed = max([printed] + [int(x.split()[1]) for x in rest.splitlines() if x.startswith("epoch ")])
        if (run / CHECKPOINT).exists():
            state = load_latest(run)  # loadable: never a torn file
            assert state["epoch"] >= printed - 1, (trial, state["epoch"], printed)  # at most one epoch old
            outcomes["killed while training"] += 1
            assert main(["train", "--resume", str(run), "--quiet"]) in (0,)
        else:
            assert printed <= 1
            outcomes["no checkpoint yet"] += 1
            assert (run / LOCK_FILE).exists() or not run.exists()  # the dead process's lock: taken over
            ppvae.train_spec(_spec([f"train.epochs={EPOCHS}"]), run_dir=run, progress=False)
        final = load_checkpoint(run / CHECKPOINT)
        assert final["epoch"] == EPOCHS
        assert _same(final["model"], reference), f"trial {trial} (stall {stall}) resumed to other weights"
        assert not (run / LOCK_FILE).exists()
        assert not list(run.glob(".*.tmp"))  # a killed writer's temporary file is cleared by the next writer
    assert outcomes["killed while training"] >= 10, outcomes


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names the file being written through /proc (Linux)")
def test_a_full_disk_keeps_the_last_good_checkpoint_and_stops_with_one_line(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):  # the disk fills while epoch 2's checkpoint is written
        if f".{CHECKPOINT}." in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    assert main(["train", *_sets(["train.epochs=3"]), "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ppvae train: error: [Errno 28] could not write the checkpoint of epoch 2 to {run} (No space "
                   f"left on device); the last good checkpoint (epoch 1) is kept; free space and resume with "
                   f"`ppvae train --resume {run}`"), err
    monkeypatch.setattr(os, "fsync", real)
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 1
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT, "metrics.csv", "spec.toml"]  # no temp file, no lock
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 3


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_detected_and_the_kept_previous_one_used(tmp_path, damage):
    run = tmp_path / "run"
    ppvae.train_spec(_spec(["train.epochs=3", "train.keep_checkpoints=2"]), run_dir=run, progress=False)
    assert load_checkpoint(run / "checkpoint.1.pt")["epoch"] == 2 and not (run / "checkpoint.2.pt").exists()
    raw = bytearray((run / CHECKPOINT).read_bytes())
    if damage == "truncate":
        raw = raw[:len(raw) // 3]
    else:
        raw[len(raw) // 2] ^= 0x10  # one bit, in the middle of the weights
    (run / CHECKPOINT).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.pt' is corrupt: its contents do not match the "
                                         r"checksum written with it"):
        load_checkpoint(run / CHECKPOINT)
    with pytest.warns(UserWarning, match=r"using the previous checkpoint checkpoint.1.pt \(epoch 2\) instead"):
        loaded = ppvae.load_run(run)
    assert loaded.metrics[-1]["epoch"] == 2
    with pytest.warns(UserWarning, match="using the previous checkpoint"):
        resumed = ppvae.resume(run, progress=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 3  # written good again


def test_a_damaged_checkpoint_with_none_kept_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    ppvae.train_spec(_spec(["train.epochs=1"]), run_dir=run, progress=False)
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:-100])
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is corrupt: its contents do not match the checksum" in err and "train.keep_checkpoints = 2" in err
    assert len(err.strip().splitlines()) == 1


def test_keep_checkpoints_rotates(tmp_path):
    run = tmp_path / "run"
    ppvae.train_spec(_spec(["train.epochs=4", "train.keep_checkpoints=3"]), run_dir=run, progress=False)
    epochs = {p.name: load_checkpoint(p)["epoch"] for p in run.glob("checkpoint*.pt")}
    assert epochs == {"checkpoint.pt": 4, "checkpoint.1.pt": 3, "checkpoint.2.pt": 2}
    with pytest.raises(ValueError, match=r"train.keep_checkpoints must be >= 1 \(1: only the latest\), got 0"):
        _spec(["train.keep_checkpoints=0"])


def test_the_same_spec_and_seed_give_the_same_run_in_two_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "ppvae", "train", *_sets(["train.epochs=3"]), "--run-dir",
                        str(tmp_path / name), "--quiet", "--deterministic"], check=True, env=env, capture_output=True)
    a, b = (load_checkpoint(tmp_path / n / CHECKPOINT) for n in ("a", "b"))
    assert _same(a["model"], b["model"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a["metrics"]) == drop(b["metrics"])
    assert a["spec"]["train"]["deterministic"] is True


def test_ctrl_c_stops_a_parallel_sweep_and_its_workers(tmp_path):
    """Ctrl-C reaches the sweep's whole process group: the sweep stops its training workers and exits (130) with
    'interrupted', leaving no process behind, rather than leaving them to train through the grid."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sweep = subprocess.Popen(
        [sys.executable, "-m", "ppvae", "sweep", "--set", "data.limit_train=2000", "--set", "train.epochs=300",
         "--set", "train.figures=false", "--grid", "beta.value=1,2", "--jobs", "2", "--out", str(tmp_path / "sweep"),
         "--no-figures", "--quiet"], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "sweep").glob("*/checkpoint.pt"))) < 2:
        time.sleep(0.5)  # both workers are training (each has written an epoch)
    os.killpg(sweep.pid, signal.SIGINT)
    out, _ = sweep.communicate(timeout=30)
    assert sweep.returncode == 130 and "interrupted" in out and "Traceback" not in out
    for _ in range(20):  # multiprocessing's resource tracker may take a moment to go after its sweep
        left = subprocess.run(["pgrep", "-g", str(sweep.pid)], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.5)
    assert left == []
