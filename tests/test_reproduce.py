"""bench/reproduce.py: a row runs its benchmark with --json and saves figure, command, device and wall time; the
table is built from the saved results, and the user's guide's results page is that table."""

import json
import re
from pathlib import Path

from benches import load_bench
from guide import guide_text

ROOT = Path(__file__).resolve().parents[1]


def test_a_row_runs_its_benchmark_and_the_table_shows_what_it_measured(tmp_path, monkeypatch):
    r = load_bench("reproduce")
    monkeypatch.setattr(r, "RESULTS", tmp_path)
    tiny = r.Row("m2-mnist", "M2, tiny", "paper figure", "semi_supervised.py",
                 {"cpu": ["--epochs", "1", "--seeds", "0", "--latent-dims", "3", "--labels-per-class", "2"]}, r._m2)
    monkeypatch.setattr(r, "ROWS", [tiny])
    record = r.run_row(tiny, "cpu")
    saved = json.loads((tmp_path / "cpu" / "m2-mnist.json").read_text())
    assert saved == json.loads(json.dumps(record)) and saved["wall_s"] > 0 and "cores" in saved["device"]
    assert saved["command"].startswith(".venv/bin/python bench/semi_supervised.py --epochs 1")
    summary = saved["result"]["summary"]
    q, sup = summary["m2 z=3"]["accuracy"][0], summary["supervised"]["accuracy"][0]
    assert 10 < q <= 100 and 10 < sup <= 100  # 20 labels of 10 digits: above chance
    text = r.table("cpu", markdown=True)
    assert f"q(y\\|x) {q:.1f}%" in text and f"classifier alone {sup:.1f}%" in text and "paper figure" in text
    # a row with no saved result says how to run it
    other = r.Row("iwae", "x", "y", "iwae.py", {"cpu": []}, r._iwae)
    monkeypatch.setattr(r, "ROWS", [tiny, other])
    assert "not run at this budget" in r.table("cpu") and "--rows iwae" in r.table("cpu")


def test_the_readmes_results_section_is_the_tables_output():
    readme = guide_text()
    found = re.search(r"<!-- reproduce --budget cpu --table --markdown -->\n(.*?)\n<!-- /reproduce -->", readme, re.S)
    assert found, "the results page lies between the reproduce markers"
    assert found.group(1).strip() == load_bench("reproduce").table("cpu", markdown=True).strip()
