"""Several processes (torchrun + DistributedDataParallel, gloo on the CPU), streamed data, and the run lock.

The two-process runs start real torchrun jobs (``ppvae train --nproc 2``), as a user would.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.inference.checkpoint import load_checkpoint
from ppvae.inference.lock import LOCK_FILE, RunLock
from ppvae.spec import dump_spec, load_spec

USER = str(Path(__file__).with_name("user_models.py").resolve())
ROOT = Path(__file__).resolve().parent.parent
SMALL = {"device": "cpu", "seed": 3, "data": {"name": "digits", "limit_train": 256, "limit_test": 64},
         "train": {"epochs": 2, "batch_size": 64, "figures": False}}


def _spec(tmp_path, **sections) -> Path:
    spec = load_spec({**SMALL, **{k: {**SMALL.get(k, {}), **v} for k, v in sections.items()}})
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.toml"
    dump_spec(spec, path)
    return path


def _ppvae(*args, timeout=300) -> subprocess.CompletedProcess:
    """``python -m ppvae ARGS`` in a fresh process (torchrun needs one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ppvae", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _weights(run) -> dict:
    return load_checkpoint(Path(run) / "checkpoint.pt")["model"]


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[:6000]
    return proc


def test_two_processes_take_the_steps_of_one_with_twice_the_batch(tmp_path):
    """2 processes x batch 64 and 1 process x batch 128 over the same examples reach the same weights (a program
    whose noise is a fixed function of the example, so the gradients are deterministic)."""
    model, data = {"name": f"{USER}:FixedNoiseVAE"}, {"limit_train": 250}  # 250 = 128 + 122: the last step is short
    _ok(_ppvae("train", _spec(tmp_path, model=model, data=data), "--nproc", "2", "--run-dir", tmp_path / "two",
               "--quiet"))
    one = ppvae.train_spec(load_spec(_spec(tmp_path, model=model, data=data, train={"batch_size": 128})),
                           run_dir=tmp_path / "one", progress=False)
    two, ref = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert [m["step"] for m in one.metrics] == [2, 4]
    assert [m["step"] for m in ppvae.load_run(tmp_path / "two").metrics] == [2, 4]  # 128 rows a step, as one process
    for k in ref:
        torch.testing.assert_close(two[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    # and the comparison can fail: one process with batch 64 takes other steps
    ppvae.train_spec(load_spec(_spec(tmp_path, model=model, data=data)), run_dir=tmp_path / "small", progress=False)
    small = _weights(tmp_path / "small")
    assert max((small[k] - ref[k]).abs().max().item() for k in ref) > 1e-3


def test_a_two_process_run_resumes_exactly_under_two_and_goes_on_under_one(tmp_path):
    spec = _spec(tmp_path, train={"epochs": 3})
    _ok(_ppvae("train", spec, "--nproc", "2", "--run-dir", tmp_path / "whole", "--quiet"))
    _ok(_ppvae("train", spec, "--nproc", "2", "--run-dir", tmp_path / "part", "--quiet", "--set", "train.epochs=1"))
    out = _ok(_ppvae("train", "--nproc", "2", "--resume", tmp_path / "part", "--set", "train.epochs=3", "--quiet"))
    assert "trained 2 epochs (to epoch 3)" in out.stdout
    whole, part = _weights(tmp_path / "whole"), _weights(tmp_path / "part")
    for k in whole:  # every rank's random stream was saved and restored: bit for bit
        assert torch.equal(whole[k], part[k]), k
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["world_size"] == 2
    # ... and continues under one process, evaluates and samples like any run
    with pytest.warns(UserWarning, match=r"this run trained on 2 process\(es\) with train.batch_size = 64 each \(steps "
                                         r"of 128 examples\); on 1 it now takes steps of 64; train.batch_size = 128 "
                                         r"keeps the step"):
        run = ppvae.resume(tmp_path / "part", ["train.epochs=4"], progress=False)
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3, 4]
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    report = ppvae.evaluate_run(tmp_path / "part", num_samples=5, figures=False)
    assert report["num_examples"] == 64 and report["iwae_log_likelihood"]["value"] >= report["elbo"]["elbo"] - 1.0
    assert main(["sample", str(tmp_path / "part"), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cvae", "m2", "hierarchical"])
def test_every_family_trains_on_two_processes(tmp_path, family):
    sections = {"cvae": {"model": {"name": "cvae"}},
                "m2": {"model": {"name": "m2", "latent_dim": 4},
                       "data": {"labels_per_class": 5}, "train": {"labeled_per_batch": 16, "epochs": 3}},
                "hierarchical": {"model": {"name": f"{USER}:HierarchicalVAE"}, "train": {"epochs": 3}}}[family]
    _ok(_ppvae("train", _spec(tmp_path, **sections), "--nproc", "2", "--run-dir", tmp_path / "run", "--quiet"))
    run = ppvae.load_run(tmp_path / "run")
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def _mapped_digits(directory: Path) -> Path:
    data = ppvae.load_dataset("digits", limit_train=256, limit_test=64, val_fraction=0)
    directory.mkdir()
    np.save(directory / "train.npy", data.train.numpy())
    np.save(directory / "test.npy", data.test.numpy())
    return directory


def test_memory_mapped_data_streams_and_trains_exactly_as_in_memory(tmp_path):
    path = _mapped_digits(tmp_path / "data")
    data = ppvae.load_dataset("file", path=str(path))
    # the validation rows are the last 26 of train.npy's 256, so the training rows stay a slice of the mapped file
    assert data.memory_mapped and isinstance(data.train, torch.Tensor) and data.train.shape == (230, 1, 8, 8)
    assert data.val.shape == (26, 1, 8, 8) and data.train.untyped_storage().data_ptr() == \
        data.val.untyped_storage().data_ptr()
    seen = {}

    def record(trainer, row):
        seen[trainer.run_dir.name] = trainer.stream

    base = {**SMALL, "data": {"name": "file", "path": str(path)}}
    for name, data_options in (("streamed", {"workers": 2}), ("resident", {"stream": False})):
        ppvae.train_spec({**base, "data": {**base["data"], **data_options}}, run_dir=tmp_path / name,
                         progress=False, callbacks=[record])
    assert seen == {"streamed": True, "resident": False}
    streamed, resident = _weights(tmp_path / "streamed"), _weights(tmp_path / "resident")
    for k in resident:
        assert torch.equal(streamed[k], resident[k]), k
    assert ppvae.load_run(tmp_path / "streamed").spec["data"]["workers"] == 2  # how it was fed is recorded


# ---- bad input ---------------------------------------------------------------------------------------------
def test_too_many_processes_and_nccl_without_cuda_are_refused(tmp_path, capsys):
    assert main(["train", "--nproc", "100000", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--nproc 100000 is more than the" in capsys.readouterr().err
    assert main(["train", "--nproc", "0"]) == 2
    assert "--nproc must be at least 1, got 0" in capsys.readouterr().err
    if not torch.cuda.is_available():
        for argv in (["train", "--nproc", "2", "--set", "train.backend=nccl"],
                     ["train", "--set", "train.backend=nccl", "--set", "train.epochs=1"]):
            assert main(argv) == 2
            assert "train.backend = 'nccl' needs CUDA GPUs, but torch sees no CUDA GPU" in capsys.readouterr().err
    assert main(["train", "--set", "train.backend=mpi"]) == 2
    assert "train.backend must be one of 'auto', 'gloo', 'nccl', got 'mpi'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_nproc_under_torchrun_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--nproc", "2"]) == 2
    assert "--nproc starts torchrun itself; under torchrun, leave --nproc out" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("stream", "'yes'", "data.stream must be true, false or \"auto\", got 'yes'"),
    ("workers", "-1", "data.workers must be an integer >= 0, got -1"),
])
def test_bad_streaming_options_are_refused(tmp_path, capsys, option, value, message):
    argv = ["train", "--set", "data.name=digits", "--set", f"data.{option}={value}", "--set", "train.epochs=1",
            "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def _holder(run: Path) -> subprocess.Popen:
    """A process that holds RUN's lock, as a training process does."""
    p = subprocess.Popen([sys.executable, "-c", f"import time; from ppvae.inference.lock import RunLock; "
                          f"lock = RunLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_run_directory_held_by_a_live_process_is_refused_naming_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = _holder(run)
    try:
        assert main(["train", "--set", "data.name=digits", "--set", "train.epochs=1", "--run-dir", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"is being written by another ppvae process (pid {holder.pid} on " in err, err
        # refused before torchrun starts
        assert main(["train", "--nproc", "2", "--set", "data.name=digits", "--run-dir", str(run)]) == 2
        assert f"(pid {holder.pid} on " in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing written, the lock left alone
    finally:
        holder.kill()
        holder.wait()
    # killed: the kernel dropped its lock, and the lock file it left is taken over
    assert (run / LOCK_FILE).read_text().split()[0] == str(holder.pid)
    assert main(["train", "--set", "data.name=digits", "--set", "data.limit_train=128", "--set", "train.epochs=1",
                 "--set", "train.figures=false", "--run-dir", str(run), "--quiet"]) == 0
    assert (run / "checkpoint.pt").is_file() and not (run / LOCK_FILE).exists()


def test_a_concurrent_trainer_is_refused_while_the_first_trains(tmp_path):
    """Two real processes: the second starts while the first holds the lock."""
    first = subprocess.Popen([sys.executable, "-m", "ppvae", "train", "--set", "data.name=digits", "--set",
                              "train.epochs=200", "--set", "train.figures=false", "--run-dir", str(tmp_path / "run"),
                              "--quiet"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until it has started training
            if (tmp_path / "run" / LOCK_FILE).exists():
                break
            assert first.poll() is None, first.communicate()
            import time
            time.sleep(0.1)
        second = _ppvae("train", "--set", "data.name=digits", "--set", "train.epochs=1", "--run-dir", tmp_path / "run")
        assert second.returncode == 2
        assert f"is being written by another ppvae process (pid {first.pid} on" in second.stderr, second.stderr
    finally:
        first.kill()
        first.wait()


def test_a_second_lock_in_one_process_is_refused_and_no_empty_directory_is_left(tmp_path):
    lock = RunLock(tmp_path / "new").acquire()
    assert (tmp_path / "new" / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    with pytest.raises(ValueError, match=rf"pid {os.getpid()} on "):
        RunLock(tmp_path / "new").acquire()
    lock.release()
    assert not (tmp_path / "new").exists()
    RunLock(tmp_path / "new").acquire().release()  # free again
