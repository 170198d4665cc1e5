"""The package's structure stays one a reader can hold: no import circle, no private name imported across modules,
the low layers importing nothing above them (read off the source, every import counted, those inside functions
too)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ppvae": ROOT / "ppvae", "ppvae.models": ROOT / "models", "ppvae.guides": ROOT / "guides"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = [p for p in file.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = file
    return out


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports():
    """{module: {imported ppvae module}}, [(module, imported module, private name)] and [(module, missing module)]."""
    edges, private, missing = {}, [], []
    for module, file in MODULES.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
                missing += [(module, t) for t in targets if t.startswith("ppvae") and t not in MODULES]
            elif isinstance(node, ast.ImportFrom):
                base = _target(module, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
                if base.startswith("ppvae"):
                    missing += [(module, base)] if base not in MODULES else []
                    private += [(module, base, a.name) for a in node.names
                                if a.name.startswith("_") and not a.name.startswith("__")]
            else:
                continue
            for target in targets:
                known = _known(target) if target.startswith("ppvae") else None
                if known and known != module:
                    edges.setdefault(module, set()).add(known)
    return edges, private, missing


EDGES, PRIVATE, MISSING = _imports()


def test_every_import_names_a_module_that_exists():
    """A module moved or renamed leaves no import behind it, not even one inside a function that no test calls."""
    assert MISSING == []


def test_no_import_circle():
    def visit(module, path):
        for target in sorted(EDGES.get(module, ())):
            if target in path:
                return path[path.index(target):] + [target]
            found = visit(target, path + [target])
            if found:
                return found
        return None

    for module in MODULES:
        cycle = visit(module, [module])
        assert cycle is None, " -> ".join(cycle)


def test_no_private_name_is_imported_across_modules():
    assert PRIVATE == []


def test_the_low_layers_import_nothing_above_them():
    below = {"ppvae.batch": set(), "ppvae.traces": {"ppvae.batch"}, "ppvae.registry": set()}
    for module, allowed in below.items():
        assert EDGES.get(module, set()) <= allowed, (module, EDGES.get(module))
    for module, targets in EDGES.items():
        if module.startswith("ppvae.data"):
            assert not {t for t in targets if t.startswith(("ppvae.inference", "ppvae.evaluate", "ppvae.apps"))}, module
        if module.startswith("ppvae.evaluate"):
            assert not {t for t in targets if t.startswith(("ppvae.apps", "ppvae.cli"))}, (module, targets)
