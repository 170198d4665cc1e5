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
