"""Sphinx configuration of ppvae's documentation site (MyST Markdown pages, the furo theme, autodoc for the API,
sphinx-argparse for the command line, ppvae's own directives for the tables generated from the registries, and
myst-nb for the tutorials, rendered from their executed copies in docs/tutorials/ without running them again)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import ppvae  # noqa: E402

project = "ppvae"
author = "the ppvae developers"
copyright = "2026, the ppvae developers"
release = version = ppvae.__version__
# sphinx-mathjax-offline: MathJax ships with the site, so formulas render without a network (as ppvae runs)
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx-mathjax-offline", "sphinx.ext.viewcode",
              "sphinxarg.ext", "ppvae_docs"]
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
# The tutorials are executed by bench/tutorials.py --save-to docs/tutorials (at their full setting, minutes each);
# the build renders those outputs and never runs a notebook. CI executes every tutorial (tests/test_tutorials.py),
# and tests/test_docs.py checks that each rendered copy holds the code of tutorials/ as it is now.
nb_execution_mode = "off"
nb_merge_streams = True
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["ppvae.css"]  # a text column wide enough for 120-column code where the screen has room
html_title = f"ppvae {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
