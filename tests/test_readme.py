"""The README's commands and example stay true, and the package installs the way the design card says."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from guide import guide_commands, guide_text

import ppvae

ROOT = Path(__file__).resolve().parents[1]
README = guide_text()  # the README and the user's guide pages after it


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_install_and_train_and_ci_runs_its_test_command():
    install, train = _blocks("bash")[0].strip().splitlines()
    assert "pip install" in install and train.strip().endswith("ppvae train")
    test_command = _blocks("bash")[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert install in ci.splitlines()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks("python")[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (16, 1, 28, 28)
    assert namespace["paths"].shape == (4, 10, 1, 28, 28)
    assert (tmp_path / "runs" / "python" / "checkpoint.pt").is_file()
    assert namespace["run"].metrics[-1]["val_elbo"] > -250
    loaded = namespace["loaded"]  # ppvae.load gives back the model, its spec and metrics, and its verbs
    assert isinstance(loaded.model, ppvae.VAE) and loaded.epoch == 5 and loaded.metrics == namespace["run"].metrics
    assert namespace["again"].shape == (16, 1, 28, 28)
    x = namespace["data"].test[:8]
    assert torch.equal(loaded.reconstruct(x), namespace["vae"].eval().reconstruct(x))
    assert torch.equal(loaded.encode(x), namespace["vae"].encode(x))


def test_readme_model_snippet_is_the_real_model():
    snippet = _blocks("python")[1]
    source = (ROOT / "models" / "vae.py").read_text()
    for line in snippet.splitlines():
        code = line.split("#")[0].strip()
        if code:
            assert code in source, code
    assert "beta" not in snippet  # the program knows nothing of beta: the trainer's one handler scales it


def test_wheel_installs_models_and_guides_inside_ppvae(tmp_path):
    pytest.importorskip("setuptools")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("ppvae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ppvae/models/vae.py" in names and "ppvae/guides/gaussian.py" in names
    assert not any(n.startswith(("models/", "guides/")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
    # every package of the source tree is in the wheel (a subpackage left out of pyproject's list would not be)
    for init in (ROOT / "ppvae").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, init
    assert "ppvae/cli/train.py" in names  # the console script's verbs


def test_readme_spec_example_is_a_valid_spec(tmp_path):
    from ppvae.inference.rebuild import build_model
    from ppvae.spec import load_spec

    (tmp_path / "spec.toml").write_text(_blocks("toml")[0])
    spec = load_spec(tmp_path / "spec.toml", ["beta.value=4"])
    assert spec["data"]["name"] == "fashion-mnist" and spec["beta"]["value"] == 4
    vae = build_model(spec, (1, 28, 28))
    assert vae.spec()["encoder"]["name"] == "conv"


def test_readme_own_model_is_pyros_vae_unchanged_and_trains_from_the_cli_by_path_and_from_python(
        tmp_path, monkeypatch, capsys):
    import shlex

    from ppvae.cli import main

    (code,) = [b for b in _blocks("python") if "class VAE(nn.Module)" in b]
    assert "ppvae" not in code  # nothing in it knows about ppvae
    assert len([line for line in code.splitlines() if line.strip()]) <= 25
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_vae.py").write_text(code)
    commands = [b for b in _blocks("bash") if "model.name=my_vae.py:VAE" in b][0].strip().splitlines()
    small = ["--set", "train.epochs=2", "--set", "data.limit_train=512", "--set", "data.limit_test=64", "--quiet"]
    train, evaluate, sample = (shlex.split(c.split("#")[0])[1:] for c in commands)
    assert main(train + small) == 0
    assert main(evaluate) == 0
    out = capsys.readouterr().out
    assert "log p(obs), IWAE K=100" in out and "skipped" not in out
    assert main(sample) == 0 and (tmp_path / "runs" / "pyro-vae" / "figures" / "samples.png").is_file()
    # and from Python, the one line the README gives; the run then evaluates from the CLI in another folder
    import ppvae

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_vae", raising=False)  # another test's my_vae.py is not this one
    from my_vae import VAE

    data = ppvae.load_dataset(limit_train=512, limit_test=64)
    line = [ln for ln in README.splitlines() if "ppvae.train(VAE(z_dim=16)" in ln][0]
    call = re.search(r"`(ppvae\.train\(VAE.*?\))`", line).group(1).replace("epochs=20", "epochs=1")
    run = eval(call, {"ppvae": ppvae, "VAE": VAE, "data": data})
    assert (tmp_path / "runs" / "pyro-vae-py" / "checkpoint.pt").is_file() and run.metrics[-1]["val_elbo"] < 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["evaluate", str(tmp_path / "runs" / "pyro-vae-py"), "-k", "5", "--no-figures"]) == 0


def test_readme_dataset_registration_example_runs(tmp_path, monkeypatch):
    import torch

    import ppvae

    (code,) = [b for b in _blocks("python") if "@ppvae.DATASETS.register" in b]
    namespace = {"torch": torch, "ppvae": ppvae}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        batch = namespace["data"].batch("train")
        assert batch["x"].dtype == torch.int64 and batch["x"].shape == (450, 12)
        assert batch["lengths"].tolist() == [12] * 450
        assert namespace["data"].batch("val")["x"].shape == (50, 12) and len(namespace["data"].test) == 200
    finally:
        ppvae.DATASETS._entries.pop("my-tokens", None)
    # and by path, recorded absolute so a run directory finds the file from anywhere
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_data.py").write_text("import torch\n\ndef load():\n    x = torch.rand(30, 4)\n"
                                         "    return x[:20], x[20:]\n")
    data = ppvae.load_dataset("my_data.py:load")
    assert data.spec["name"] == f"{tmp_path / 'my_data.py'}:load" and data.train.shape == (18, 4)  # 2 validation


def test_readme_best_checkpoint_commands_run_as_written(tmp_path, monkeypatch, capsys):
    from ppvae.cli import main

    monkeypatch.chdir(tmp_path)
    train, evaluate, export = guide_commands("runs/selected")
    assert main(train) == 0 and (tmp_path / "runs" / "selected" / "best.pt").is_file()
    assert main(evaluate) == 0
    assert re.search(r"read runs/selected/best.pt \(epoch \d+ of 10\)", capsys.readouterr().out)
    assert main(export) == 0
    best = ppvae.load_run(tmp_path / "runs" / "selected", checkpoint="best").epoch
    assert f"wrote model.pt (epoch {best}, " in capsys.readouterr().out and ppvae.load("model.pt").epoch == best


def test_readme_command_line_block_runs_as_written(tmp_path, monkeypatch):
    from ppvae.cli import main

    monkeypatch.chdir(tmp_path)
    train, evaluate, sample = guide_commands("runs/laplace")
    assert main(train) == 0 and main(evaluate) == 0 and main(sample) == 0
    run = ppvae.load_run(tmp_path / "runs" / "laplace")
    assert run.spec["prior"]["name"] == "laplace" and run.spec["beta"]["value"] == 4 and len(run.metrics) == 5
    assert (tmp_path / "runs" / "laplace" / "report.json").is_file()
    assert (tmp_path / "runs" / "laplace" / "figures" / "samples.png").is_file()
