"""bench/text.py, the sentence-VAE row of the reproduction table, at a tiny setting: its JSON rows, the language
model as the reference, cyclical annealing's schedule as the run logged it, and runs reused on a second call."""

import csv
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")

from benches import load_bench  # noqa: E402

from ppvae.data.text import FORTUNES  # noqa: E402

pytestmark = pytest.mark.skipif(not Path(FORTUNES).is_dir(), reason="Debian's fortunes is not installed "
                                                                    "(apt-get install fortunes)")


def tiny(tmp_path, settings):
    return ["--settings", settings, "--n", "150", "--n-test", "40", "--vocab-size", "300", "--epochs", "3",
            "--cycles", "2", "--num-samples", "4", "--threads", "1", "--out", str(tmp_path / "runs"),
            "--json", str(tmp_path / "text.json")]


def cyclical_beta(t: float, cycles: int, epochs: int, ratio: float = 0.5) -> float:
    """Fu et al.'s schedule, written out: beta rises from 0 to 1 over the first ``ratio`` of each cycle."""
    position = t * cycles / epochs
    return min(1.0, (position - math.floor(position)) / ratio)


def test_the_table_rows_and_cyclical_annealings_logged_beta(tmp_path, capsys):
    bench = load_bench("text")
    result = bench.main(tiny(tmp_path, "cyclical,lm"))
    assert json.loads((tmp_path / "text.json").read_text()) == result
    lm, cyc = result["rows"]  # the table's order, not the order asked
    assert [lm["setting"], cyc["setting"]] == ["language model (no z)", "VAE + cyclical annealing"]
    assert set(lm) == {"setting", "nll_per_token", "ppl", "kl", "active_units", "latent_dim", "nll_over_lm",
                       "train_s"}
    assert lm["kl"] == 0 and lm["active_units"] == 0 and lm["nll_over_lm"] == 1
    for row in result["rows"]:
        assert 0 < row["nll_per_token"] < math.log(300) + 1  # positive, finite, not far from uniform over the words
        assert row["ppl"] == pytest.approx(math.exp(row["nll_per_token"]))
        assert row["train_s"] > 0
    assert cyc["kl"] >= 0 and 0 <= cyc["active_units"] <= 32
    assert cyc["nll_over_lm"] == pytest.approx(cyc["nll_per_token"] / lm["nll_per_token"])
    assert "3 epochs" in result["setting"] and "cyclical 2 cycles ratio 0.5" in result["setting"]
    out = capsys.readouterr().out
    assert "Optimus on PTB" in out and "KL 1.37, 5 AU" in out and "LSTM-LM PPL 100.5" in out

    # 2 cycles over 3 epochs: an epoch's last step is at beta 1 (end of cycle 1), after the restart part way up,
    # then at 1 again (the end of cycle 2)
    with open(tmp_path / "runs" / "cyclical" / "metrics.csv") as f:
        logged = [(int(r["epoch"]), int(r["step"]), float(r["beta"])) for r in csv.DictReader(f)]
    steps = logged[0][1]
    expected = [cyclical_beta(epoch - 1 + (steps - 1) / steps, 2, 3) for epoch, _, _ in logged]
    betas = [beta for _, _, beta in logged]
    assert betas == pytest.approx(expected)
    assert betas[0] == 1 and 0 < betas[1] < 1 and betas[2] == 1

    again = bench.main(tiny(tmp_path, "lm"))  # the same spec: the run is reused, its training time kept
    assert again["rows"][0]["train_s"] == lm["train_s"]
    with pytest.raises(SystemExit):
        bench.main(tiny(tmp_path, "lm,cyclic"))
    assert "unknown cyclic" in capsys.readouterr().err
