"""Sphinx configuration of ppvae's documentation site (MyST Markdown pages, the furo theme, autodoc for the API,
sphinx-argparse for the command line, and ppvae's own directives for the tables generated from the registries)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import ppvae  # noqa: E402

project = "ppvae"
author = "the ppvae developers"
release = version = ppvae.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode", "sphinxarg.ext",
              "ppvae_docs"]
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"ppvae {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
