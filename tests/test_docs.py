"""The documentation site (docs/) builds with no warning, and its generated reference pages hold every public name,
every registered component and every verb; every public name has a docstring with a summary line."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ppvae
from ppvae import registry

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_has_its_own_docstring_with_a_summary_line():
    missing = []
    for name in ppvae.__all__:
        obj = getattr(ppvae, name)  # a name in __all__ that does not import fails here
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
        if isinstance(obj, registry.Registry):
            doc = type(obj).__doc__
        first = inspect.cleandoc(doc or "").split("\n\n")[0].strip()
        if len(first) < 10:
            missing.append(name)
    assert not missing, f"public names without a docstring of their own: {missing}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx")  # the docs extra: pip install -e '.[docs]' (CI installs it)
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"),
                           str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]  # -W: any warning (a broken reference, a bad docstring) fails
    return out


def test_the_api_page_documents_every_public_name(site):
    html = (site / "api.html").read_text()
    ids = set(re.findall(r'id="(?:module-)?(ppvae[\w.]*)"', html))
    absent = [n for n in ppvae.__all__ if f"ppvae.{n}" not in ids and getattr(getattr(ppvae, n), "__name__", "")
              not in ids]
    assert not absent, absent


def test_the_component_tables_are_generated_from_every_registry(site):
    html = (site / "components.html").read_text()
    registry.load_builtins()
    for reg in (registry.MODELS, registry.PRIORS, registry.LIKELIHOODS, registry.ENCODERS, registry.DECODERS,
                registry.GUIDES, registry.BETAS, registry.OBJECTIVES, registry.OPTIMIZERS, registry.DATASETS,
                registry.TRANSFORMS):
        for name in reg.names:
            assert f'<span class="pre">{name}</span>' in html, (reg.kind, name)
    # options with their defaults, read from the constructors: the laplace prior's scale, M2's alpha
    assert "alpha=50.0" in html and "<table" in html


def test_the_cli_page_is_generated_from_the_parser(site):
    from ppvae.cli import VERBS

    html = (site / "cli.html").read_text()
    for verb in VERBS:
        assert f'id="ppvae-{verb}"' in html, verb
    assert "--checkpoint" in html and "--quiet" in html


TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
RENDERED = ROOT / "docs" / "tutorials"


def _prose_and_code(nb) -> list[tuple[str, str]]:
    """A notebook's cells as (type, source), without the provenance cell the rendered copy adds."""
    return [(c.cell_type, c.source) for c in nb.cells if c.metadata.get("ppvae") != "provenance"]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_each_tutorial_is_rendered_from_its_notebook_as_it_is_now_with_its_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    again = f"write it anew: .venv/bin/python bench/tutorials.py --save-to docs/tutorials {path.relative_to(ROOT)}"
    rendered_path = RENDERED / path.name
    assert rendered_path.is_file(), f"{path.name} has no executed copy in docs/tutorials/; {again}"
    source, rendered = nbformat.read(path, as_version=4), nbformat.read(rendered_path, as_version=4)
    # the page shows the numbers of the program the tutorial is now, never of an older version of it
    assert _prose_and_code(rendered) == _prose_and_code(source), f"docs/tutorials/{path.name} is stale; {again}"
    code = [c for c in rendered.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not executed top to bottom, once"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} has an error in its rendered copy"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} is rendered without its figures"
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "\r" not in streams and "\x1b" not in streams, "a progress bar's redraws are in the rendered page"
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    # at its full setting, with the provenance that the page states
    assert not any("SMALL=True" in o.get("text", "") for o in outputs), "the small (CI) setting was rendered"
    (provenance,) = [c for c in rendered.cells if c.metadata.get("ppvae") == "provenance"]
    commit = rendered.metadata["ppvae"]["commit"]
    assert f"`{commit}`" in provenance.source and not commit.endswith("-dirty"), "run from uncommitted code"
    if (ROOT / ".git").exists():  # the commit is in this history (a shallow clone holds too little to tell)
        git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
        known = git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
        assert known or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true", \
            f"commit {commit} is not in this repository"


def test_the_site_shows_every_tutorial_with_its_figures_and_formulas(site):
    nbformat = pytest.importorskip("nbformat")
    for path in TUTORIALS:
        html = (site / "tutorials" / f"{path.stem}.html").read_text()
        rendered = nbformat.read(RENDERED / path.name, as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in rendered.cells if c.cell_type == "code"
                      for o in c.outputs)
        assert html.count("<img") >= figures > 0, path.name
        assert "Rendered from" in html, path.name
    # formulas are typeset by the MathJax that ships with the site (no network needed), the tutorials are listed
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert 'src="../_static/mathjax/tex-chtml.js' in (site / "tutorials" / f"{TUTORIALS[0].stem}.html").read_text()
    index = (site / "index.html").read_text()
    assert all(f'href="tutorials/{p.stem}.html"' in index for p in TUTORIALS)
    assert 'src="_images/landing.png"' in index  # the landing page's one picture


def test_the_install_page_commands_are_the_ones_ci_runs():
    page = (ROOT / "docs" / "guide" / "install.md").read_text()
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", page, flags=re.S)
             for line in block.strip().splitlines()]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_packages = {word for line in re.findall(r"apt-get install -y -qq ([^>|&]+)", ci) for word in line.split()}
    checked = 0
    for line in lines:
        if "pip install" in line or "pytest" in line:
            assert line in ci.splitlines(), f"the install page's {line!r} is not what .ci/run runs"
        elif line.startswith("apt-get"):
            packages = set(line.split("install -y", 1)[1].split())
            assert packages == ci_packages, (packages, ci_packages)
        else:
            assert line == ".venv/bin/ppvae --help", f"an install-page command no test runs: {line!r}"
            done = subprocess.run([sys.executable, "-m", "ppvae", "--help"], capture_output=True, text=True)
            assert done.returncode == 0 and "usage: ppvae" in done.stdout
        checked += 1
    assert checked == 5, lines


def test_the_rendered_tutorials_keep_every_output_but_the_progress_bars():
    nbformat = pytest.importorskip("nbformat")
    from benches import load_bench

    tutorials = load_bench("tutorials")
    out = nbformat.v4.new_output
    outputs = [out("stream", name="stdout", text="epoch 1: -ELBO 120.5\n"),
               out("stream", name="stderr", text="\revaluate:   0%|          | 0/8 [00:00]"),
               out("stream", name="stderr", text="\n\x1b[A\rIWAE:  50%|█████     | 500/1000 [00:05<00:05]\n"),
               out("stream", name="stderr", text="model.py:3: UserWarning: posterior collapse\n"),
               out("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "a"},
                                         "text/plain": "train:   0%|          | 0/400 [00:00]"}),
               out("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
               out("stream", name="stdout", text="done\n")]
    kept = tutorials.without_progress_bars(outputs)
    assert [(o.output_type, o.get("name"), o.get("text")) for o in kept] == [
        ("stream", "stdout", "epoch 1: -ELBO 120.5\n"), ("stream", "stderr", "model.py:3: UserWarning: posterior "
                                                                              "collapse\n"),
        ("display_data", None, None), ("stream", "stdout", "done\n")]
