"""bench/end_to_end.py (issue 25's end-to-end timings: the README's `ppvae train`, and `ppvae evaluate -k 100` of a
conv Fashion-MNIST run, each in a fresh process) runs at a tiny setting and reports what it ran."""

import json

import pytest
from benches import load_bench


def test_end_to_end_bench_tiny(tmp_path, capsys):
    from ppvae.data import load_dataset

    try:
        load_dataset("fashion-mnist", limit_train=10, limit_test=10)
    except Exception as e:  # the IDX files are not installed and there is no network
        pytest.skip(f"fashion-mnist is not available offline: {e}")
    out = tmp_path / "e2e.json"
    result = load_bench("end_to_end").main(["--train-epochs", "2", "--conv-train", "300", "--max-examples", "20",
                                            "--json", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    train, evaluate = result["rows"]
    assert 0 < train["after_start_up_s"] < train["wall_s"]  # the command's own training time, inside its wall time
    assert evaluate["what"] == "ppvae evaluate -k 100, conv Fashion-MNIST, 20 examples" and evaluate["wall_s"] > 0
    printed = capsys.readouterr().out
    assert "ppvae train (the README's main job)" in printed and "target s" in printed


def test_end_to_end_bench_refuses_a_bad_count(capsys):
    with pytest.raises(SystemExit):
        load_bench("end_to_end").main(["--max-examples", "0"])
    assert "--max-examples must be >= 1, got 0" in capsys.readouterr().err
