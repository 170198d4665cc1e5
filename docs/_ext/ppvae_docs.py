"""Sphinx directives that generate ppvae's reference pages from the code, so nothing in them is written by hand:

* ``ppvae-registries``: a table per registry (priors, likelihoods, encoders, ...): each component's name, the class
  or function behind it, the options its constructor takes with their defaults, and its docstring's first line;
* ``ppvae-api``: an autodoc entry for every name in ``ppvae.__all__``.
"""

from __future__ import annotations

import inspect
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import ppvae
from ppvae import registry

#: registry attribute -> the spec section or key that names its components
REGISTRIES = {"MODELS": "model.name", "PRIORS": "prior.name", "LIKELIHOODS": "likelihood.name",
              "ENCODERS": "encoder.name", "DECODERS": "decoder.name", "GUIDES": "guide.name",
              "BETAS": "beta.name", "OBJECTIVES": "objective.name", "OPTIMIZERS": "optimizer.name",
              "DATASETS": "data.name", "TRANSFORMS": "data.transform"}


def own_doc(obj) -> str:
    """An object's own docstring (a class's, not inherited from its base), else its module's."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not (doc or "").strip():
        doc = getattr(inspect.getmodule(obj), "__doc__", None)
    return inspect.cleandoc(doc or "")


def summary(obj) -> str:
    """The first sentence of an object's own docstring (or its module's; "" where neither has one)."""
    paragraph = own_doc(obj).strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)\. ", text)  # "Sohn et al. 2015" is not an end
    return text[:end.start() + 1] if end else text


def options(obj) -> str:
    """The constructor's options a spec may set: parameters with defaults, as name=default."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    out = []
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            out.append(f"``{p.name}`` (required)")
        elif p.default is not inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD:
            out.append(f"``{p.name}={p.default!r}``")
    return ", ".join(out)


def _cell(text: str) -> str:
    return " ".join(text.split()) or "(none)"


def registry_rows(name: str) -> list[tuple[str, str, str, str]]:
    """(component name, object path, options, summary) for every component of a registry."""
    reg = getattr(registry, name)
    rows = []
    for component in reg.names:
        obj = reg.get(component)
        path = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', component)}"
        rows.append((component, path, options(obj), summary(obj)))
    return rows


class Registries(SphinxDirective):
    """Every registry as a list-table."""

    def run(self):
        registry.load_builtins()
        lines = []
        for name, key in REGISTRIES.items():
            reg = getattr(registry, name)
            lines += [f".. rubric:: {reg.kind.capitalize()}s (``{key}``, ``ppvae.{name}``)", "",
                      ".. list-table::", "   :header-rows: 1", "   :widths: 15 50 35", "",
                      "   * - name", "     - what it is (defined by)", "     - options"]
            for component, path, opts, text in registry_rows(name):
                text = _cell(text).replace("*", "\\*")
                lines += [f"   * - ``{component}``", f"     - {text} (:py:obj:`{path}`)", f"     - {_cell(opts)}"]
            lines.append("")
        return self._parse(lines)

    def _parse(self, lines):
        node = nodes.section()
        node.document = self.state.document
        self.state.nested_parse(StringList(lines, source="ppvae-registries"), self.content_offset, node)
        return node.children


class Api(SphinxDirective):
    """autodoc for ``ppvae.__all__``: callables and classes, then the registries, then the short-named modules."""

    def run(self):
        names = list(ppvae.__all__)
        objects = {n: getattr(ppvae, n) for n in names}
        lines = []
        for n in names:
            obj = objects[n]
            if inspect.ismodule(obj) or isinstance(obj, registry.Registry):
                continue
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            lines += [f".. {kind}:: ppvae.{n}", ""]
        lines += [".. rubric:: Registries", ""]
        for n in names:
            if isinstance(objects[n], registry.Registry):
                lines += [f".. py:data:: ppvae.{n}", "",
                          f"   The {objects[n].kind} registry: see :doc:`components`.", ""]
        lines += [".. rubric:: Modules", ""]
        for n in names:
            if inspect.ismodule(objects[n]):
                lines += [f".. automodule:: {objects[n].__name__}", ""]
        node = nodes.section()
        node.document = self.state.document
        self.state.nested_parse(StringList(lines, source="ppvae-api"), self.content_offset, node)
        return node.children


def setup(app):
    app.add_directive("ppvae-registries", Registries)
    app.add_directive("ppvae-api", Api)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
