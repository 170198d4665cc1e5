"""Training runs: resume equals an uninterrupted run, checkpoints survive crashes and NaNs."""

import os

import pytest
import torch
from conftest import TINY

import ppvae
from ppvae.inference.checkpoint import CHECKPOINT, atomic_write_bytes, load_checkpoint
from ppvae.inference.run import load_run, resume, train_spec
from ppvae.inference.train import NonFiniteLossError, Trainer, resolve_device


class _Interrupt(Exception):
    pass


def _stop_after(epoch):
    def callback(trainer, row):
        if row["epoch"] == epoch:
            raise _Interrupt
    return callback


@pytest.mark.parametrize("beta", [["beta.name=constant"], ["beta.name=linear", "beta.warmup_epochs=2"]])
def test_resume_equals_uninterrupted(tmp_path, beta):
    overrides = TINY + beta + ["train.epochs=3", "seed=7", "train.figures=false"]
    full = train_spec(None, overrides, run_dir=tmp_path / "full", progress=False)

    with pytest.raises(_Interrupt):
        train_spec(None, overrides, run_dir=tmp_path / "cut", progress=False, callbacks=[_stop_after(1)])
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT)["epoch"] == 1
    resumed = resume(tmp_path / "cut", progress=False)

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in full.metrics]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in resumed.metrics]
    # the optimiser state came back too (Adam's step count)
    sa = load_checkpoint(tmp_path / "full" / CHECKPOINT)["optimizer"]["state"]
    sb = load_checkpoint(tmp_path / "cut" / CHECKPOINT)["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_resume_can_extend_a_finished_run(tmp_path):
    run = train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=tmp_path, progress=False)
    assert len(run.metrics) == 1
    more = resume(tmp_path, ["train.epochs=2"], progress=False)
    assert [m["epoch"] for m in more.metrics] == [1, 2]


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_never_destroys_the_last_good_checkpoint(tmp_path):
    def poison(trainer, row):  # after epoch 1's checkpoint is written, break the weights
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"at epoch 2.*the last good checkpoint \(epoch 1\) is kept in"):
        train_spec(None, TINY + ["train.epochs=3", "train.figures=false"], run_dir=tmp_path, progress=False,
                   callbacks=[poison])
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == 2  # header + epoch 1
    # and it still loads and generates
    assert torch.isfinite(load_run(tmp_path).model.generate(4)).all()


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"good")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half-written")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["file.bin"]  # no temporary file left behind


def test_run_directory_rebuilds_what_was_trained(tmp_path, small_mnist):
    run = train_spec(None, TINY + ["train.epochs=2", "model.latent_dim=3"], run_dir=tmp_path, progress=False)
    loaded = load_run(tmp_path)
    x = small_mnist.test[:16]
    assert loaded.model.spec() == run.model.spec()
    assert torch.equal(loaded.model.reconstruct(x), run.model.eval().reconstruct(x))
    again = ppvae.evaluate_elbo(loaded.model, loaded.data.val)  # the per-epoch metrics read the validation split
    assert again["elbo"] == pytest.approx(run.metrics[-1]["val_elbo"], rel=1e-6)


def test_python_api_run_dir_and_array_data(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(300, 16) > 0.5
    data = ppvae.dataset_from_array(x.float())
    vae = ppvae.VAE(data.event_shape, latent_dim=2, encoder={"name": "mlp", "hidden": [32]},
                    decoder={"name": "mlp", "hidden": [32]})
    run = ppvae.train(vae, data, epochs=2, beta={"name": "linear", "warmup_epochs": 1}, run_dir=tmp_path,
                      progress=False)
    # 240 training rows, 2 steps an epoch: beta at the last step of epoch 1 is halfway up the warm-up
    assert [m["beta"] for m in run.metrics] == [0.5, 1.0]
    assert run.metrics[0]["epoch"] == 1
    assert (tmp_path / "figures" / "samples.png").stat().st_size > 0  # (N, 16) data drawn as 4x4 images
    assert load_run(tmp_path).spec["data"]["name"] == "array"


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="device 'cuda' was asked for but torch sees no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_trainer_rejects_data_outside_support(small_mnist):
    spec = ppvae.load_spec(None, TINY)
    vae = ppvae.build_model(spec, small_mnist.event_shape)
    bad = ppvae.Dataset("bad", small_mnist.train * 2, small_mnist.test * 2)
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs data in \[0, 1\]"):
        Trainer(vae, bad, spec)


def test_resume_uses_the_optimizer_settings_of_the_resumed_spec(tmp_path):
    train_spec(None, TINY + ["train.epochs=1", "train.figures=false"], run_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["optimizer"]["param_groups"][0]["lr"] == 1e-3
    resume(tmp_path, ["train.epochs=2", "optimizer.lr=1e-4", "optimizer.betas=[0.5, 0.9]"], progress=False)
    group = load_checkpoint(tmp_path / CHECKPOINT)["optimizer"]["param_groups"][0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.9)  # not the saved 1e-3: "lower the lr" works


def test_a_nan_validation_elbo_with_finite_weights_is_not_checkpointed(tmp_path, monkeypatch):
    real = Trainer._epoch_metrics

    def nan_in_epoch_2(self, *args):
        row = real(self, *args)
        return {**row, "val_elbo": float("nan")} if row["epoch"] == 2 else row

    monkeypatch.setattr(Trainer, "_epoch_metrics", nan_in_epoch_2)
    with pytest.raises(NonFiniteLossError, match=r"the val elbo became nan at epoch 2; the last good checkpoint "
                                                 r"\(epoch 1\) is kept"):
        train_spec(None, TINY + ["train.epochs=3", "train.figures=false"], run_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_weight_with_finite_metrics_is_not_checkpointed(tmp_path, monkeypatch, value):
    """Epoch 2's metrics are finite, but one weight is then made non-finite: the epoch-end check of the weights
    (one host read over all of them) refuses it, and epoch 1's checkpoint stays."""
    real = Trainer._epoch_metrics

    def break_a_weight_in_epoch_2(self, *args):
        row = real(self, *args)
        if row["epoch"] == 2:
            with torch.no_grad():
                list(self.model.parameters())[-1].view(-1)[0] = value
        return row

    monkeypatch.setattr(Trainer, "_epoch_metrics", break_a_weight_in_epoch_2)
    with pytest.raises(NonFiniteLossError, match=r"a parameter became non-finite at epoch 2; the last good "
                                                 r"checkpoint \(epoch 1\) is kept"):
        train_spec(None, TINY + ["train.epochs=3", "train.figures=false"], run_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


def test_python_train_takes_a_beta_schedule_by_name(small_mnist):
    vae = ppvae.VAE(small_mnist.event_shape, 2, encoder={"name": "mlp", "hidden": [32]},
                    decoder={"name": "mlp", "hidden": [32]})
    run = ppvae.train(vae, small_mnist, epochs=2, beta="cyclical", device="cpu", progress=False, figures=False)
    assert run.spec["beta"] == {"name": "cyclical", "value": 1.0, "cycles": 4, "ratio": 0.5}
    with pytest.raises(ValueError, match="unknown beta schedule 'cyclic'; choose one of: capacity, constant"):
        ppvae.train(vae, small_mnist, epochs=1, beta="cyclic", device="cpu", progress=False, figures=False)


@pytest.mark.parametrize("mode", ["all", "rows", "alternate"])
def test_drop_last_leaves_out_each_epochs_short_batch_and_only_that(mode):
    from ppvae.batch import Batch
    from ppvae.inference.batching import Batching
    from ppvae.inference.distributed import World

    n, size = 103, 10
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[:25] = True  # 25 labelled rows, 78 unlabelled
    train = Batch({"x": torch.arange(n).float()[:, None], "labeled": labeled})
    tr = {"batch_size": size, **({"labeled_per_batch": 2} if mode == "rows" else {}),
          **({"labeled_batches": "alternate"} if mode == "alternate" else {})}
    if mode == "all":
        train = Batch({"x": train["x"]})
    orders = {}
    for drop in (False, True):
        b = Batching(train, {"seed": 0, "train": {**tr, "drop_last": drop}}, World(), torch.device("cpu"))
        orders[drop] = [b.order(epoch) for epoch in range(2)]
        assert all(len(o) == b.steps_per_epoch for o in orders[drop])
    sizes = {drop: [len(rows) for rows in orders[drop][0]] for drop in orders}
    if mode == "all":  # 10 batches of 10 and one of 3; the same shuffle either way
        assert sizes[False] == [10] * 10 + [3] and sizes[True] == [10] * 10
        assert all(torch.equal(a, b) for a, b in zip(orders[False][1], orders[True][1]))
    elif mode == "rows":  # 2 labelled and 8 unlabelled rows a batch: 78 unlabelled rows are 9 batches and 6 rows
        assert sizes[False] == [10] * 9 + [8] and sizes[True] == [10] * 9
    else:  # labelled batches of 10, 10, 5 and unlabelled of 10 (7 of them) and 8: the two short ones go
        assert sorted(sizes[False]) == [5, 8] + [10] * 9 and sizes[True] == [10] * 9
    for epochs in orders.values():  # no row twice in an epoch
        for order in epochs:
            rows = torch.cat(order)
            assert len(rows.unique()) == len(rows)


def test_drop_last_refuses_an_epoch_without_steps_and_alternation_without_labelled_batches():
    from ppvae.batch import Batch
    from ppvae.inference.batching import Batching
    from ppvae.inference.distributed import World

    spec = {"seed": 0, "train": {"batch_size": 32, "drop_last": True}}
    with pytest.raises(ValueError, match=r"^an epoch has no step: 20 training rows make no full batch of "
                                         r"train.batch_size = 32 with train.drop_last = true; set a smaller "
                                         r"train.batch_size or train.drop_last = false$"):
        Batching(Batch({"x": torch.zeros(20, 2)}), spec, World(), torch.device("cpu"))
    labeled = torch.zeros(100, dtype=torch.bool)
    labeled[:5] = True
    alternate = {"seed": 0, "train": {"batch_size": 10, "drop_last": True, "labeled_batches": "alternate"}}
    with pytest.raises(ValueError, match=r"^train.drop_last = true would leave out every labelled batch: the 5 "
                                         r"labelled rows are fewer than one batch of 10"):
        Batching(Batch({"x": torch.zeros(100, 2), "labeled": labeled}), alternate, World(), torch.device("cpu"))
