"""bench/iwae.py (VAE against IWAE k = 5, 50 on Fashion-MNIST, scored by the IWAE estimate of log p(x)) runs end
to end at a tiny setting, writes its JSON, and each run's importance-weighted estimate is at least its ELBO: the
K-sample bound tightens the one-sample bound, so -NLL >= ELBO."""

import json

import pytest
from benches import load_bench


def test_iwae_bench_tiny(tmp_path):
    from ppvae.data import load_dataset

    try:
        load_dataset("fashion-mnist", limit_train=10, limit_test=10)
    except Exception as e:  # the IDX files are not installed and there is no network
        pytest.skip(f"fashion-mnist is not available offline: {e}")
    out = tmp_path / "result.json"
    result = load_bench("iwae").main(["--limit-train", "500", "--epochs", "1", "--test-n", "20", "--eval-k", "50",
                                      "--out", str(tmp_path / "runs"), "--json", str(out)])
    written = json.loads(out.read_text())
    assert set(written) >= {"rows", "wall_s", "setting"}
    assert written["rows"] == json.loads(json.dumps(result["rows"]))
    assert [(r["objective"], r["k"]) for r in written["rows"]] == [("Trace_ELBO", 1), ("IWAE", 5), ("IWAE", 50)]
    for row in written["rows"]:
        assert {"objective", "k", "test_nll_k5000", "test_elbo", "active_units", "train_s"} <= set(row)
        assert -row["test_nll_k5000"] >= row["test_elbo"], row  # the IWAE estimate is at least the ELBO
        assert 0 <= row["active_units"] <= row["latent_dim"]
    assert written["rows"][0]["nll_minus_first"] == 0.0
