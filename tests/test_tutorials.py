"""Every tutorial notebook executes top to bottom (at its small setting, PPVAE_TUTORIAL_SMALL=1).

The notebooks assert the claims their prose makes, so a notebook that runs is a notebook that is true.
Outputs are never committed: a notebook with outputs fails here too.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_executes(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} has committed outputs; strip them"
    monkeypatch.setenv("PPVAE_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # runs/ and figures written by the notebook stay out of the repository
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 1, "tutorials/ has no notebooks"
