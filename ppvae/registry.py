"""Name -> component registries, and user code named by import path.

Every swappable piece (model, prior, likelihood, network, guide, beta schedule, objective, optimizer) is
registered under a short name, so a spec file or a CLI override can pick it by name and a built object can say
which name and options rebuild it. A user's own class is named the same way by import path,
``"my_models:HierarchicalVAE"`` (an importable module) or ``"path/to/my_models.py:HierarchicalVAE"`` (a file),
and an installed package can register names through the ``ppvae.components`` entry-point group::

    [project.entry-points."ppvae.components"]
    "prior.my_laplace" = "my_package.priors:MyLaplace"     # <kind>.<name> = "module:Class"

Kinds are the registry names below (``model``, ``prior``, ``likelihood``, ``encoder``, ``decoder``, ``guide``,
``beta``, ``objective``, ``optimizer``).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "ppvae.components"


class Registry:
    """A mapping from names to constructors, with errors that list what is allowed."""

    def __init__(self, kind: str, key: str):
        self.kind = kind  # for messages: "prior", "beta schedule"
        self.key = key  # the spec section and entry-point prefix: "prior", "beta"
        self._entries: dict[str, Callable[..., Any]] = {}
        _ALL[key] = self

    def register(self, name: str) -> Callable:
        def decorator(cls):
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = cls
            cls.registry_name = name  # in the class's own __dict__: subclasses do not inherit the name
            return cls

        return decorator

    @property
    def names(self) -> list[str]:
        load_builtins()
        _load_entry_points()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str):
            raise ValueError(f"a {self.kind} is named by a string: one of {', '.join(self.names)}, or an import path "
                             f"('module:Class'); got {brief(name)}")
        if ":" in name:
            return load_object(name, self.kind)
        if name not in self._entries:
            load_builtins()
            _load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names, n=1)
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names)}, or name your own class by "
                f"import path ('module:Class' or 'path/to/file.py:Class')"
                + (f"; did you mean {close[0]!r}?" if close else "")
            ) from None

    def holds(self, obj) -> bool:
        """Whether ``obj`` is an instance of a class registered here."""
        name = getattr(type(obj), "registry_name", None)
        return isinstance(name, str) and name in self and self._entries[name] is type(obj)

    def default_for(self, kind: str) -> str:
        """The name of the entry that declares itself the default for data of ``kind`` (its class attribute
        ``default_for = kind``: the sequence VAE for token data), so that no module outside it names it."""
        load_builtins()
        found = [name for name, cls in self._entries.items() if vars(cls).get("default_for") == kind]
        if len(found) != 1:
            raise LookupError(f"{len(found)} {self.kind}s declare themselves the default for {kind} data "
                              f"({', '.join(found) or 'none'}); exactly one should")
        return found[0]

    def build(self, name: str, *args, **options) -> Any:
        """Construct ``name`` from structural ``args`` and user ``options``; unknown options are named."""
        cls = self.get(name)
        check_options(cls, options, f"{self.kind} {name!r}")
        return cls(*args, **options)

    def __contains__(self, name: str) -> bool:
        if name not in self._entries:
            load_builtins()
        return name in self._entries


_ALL: dict[str, Registry] = {}


def check_options(cls, options: dict, who: str, keyword_only: bool = True) -> None:
    """Refuse options that ``cls``'s constructor does not take, naming what it does take."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    P = inspect.Parameter
    kinds = (P.KEYWORD_ONLY,) if keyword_only else (P.KEYWORD_ONLY, P.POSITIONAL_OR_KEYWORD)
    allowed = [p.name for p in params if p.kind in kinds]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{who} got unknown option(s) {', '.join(unknown)}; it accepts: "
                         f"{', '.join(allowed) or 'no options'}")
    for p in params:  # a number option given a word (lr = "fast") is named here, not deep inside the class
        default, value = p.default, options.get(p.name)
        if p.name in options and isinstance(default, float) \
                and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{who} option {p.name} must be a number, got {value!r}")


# ---- user code by import path ------------------------------------------------------------------------------
def load_object(path: str, kind: str = "object") -> Any:
    """The object an import path names: ``"package.module:Name"`` or ``"dir/file.py:Name"`` (dots in Name
    reach nested attributes). Errors say what was looked for and where."""
    target, _, qualname = path.rpartition(":")
    if not target or not qualname:
        raise ValueError(f"{kind} {path!r}: an import path looks like 'module:Class' or 'path/to/file.py:Class'")
    if target.endswith(".py"):
        file = Path(target).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"{kind} {path!r}: the file {str(file)!r} does not exist (has it moved? a run "
                                    f"records the absolute path of the file its model came from)")
        module = _import_file(file.resolve(), kind, path)
    else:
        try:
            module = _import_module(target)
        except ImportError as e:
            raise ValueError(f"{kind} {path!r}: cannot import module {target!r} ({e}); is it on PYTHONPATH, or "
                             f"give its file as 'path/to/{target.replace('.', '/')}.py:{qualname}'") from None
    obj = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{kind} {path!r}: {target!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def absolute_path(name: str) -> str:
    """An import path with its file made absolute (``my_data.py:load`` -> ``/home/me/my_data.py:load``), so that
    a run directory finds it from any directory; names and module paths are returned as they are."""
    target, sep, qualname = name.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).expanduser().resolve()}:{qualname}"
    return name


def _import_module(target: str):
    """``importlib.import_module``, and where that fails, again with the working directory on the path (as
    ``python -m`` has it; the ``ppvae`` command does not)."""
    try:
        return importlib.import_module(target)
    except ImportError:
        cwd = str(Path.cwd())
        if cwd in sys.path:
            raise
        with _on_path(Path.cwd()):
            return importlib.import_module(target)


class _on_path:
    """A folder first on ``sys.path`` for a block (as Python puts a script's folder there while it runs)."""

    def __init__(self, folder: Path):
        self.folder = str(folder)

    def __enter__(self):
        sys.path.insert(0, self.folder)

    def __exit__(self, *exc):
        try:
            sys.path.remove(self.folder)
        except ValueError:
            pass


def _file_module(file: Path) -> str:
    """The module name a file imported by path gets: one per file, named after its path."""
    return "ppvae_user_" + hashlib.sha1(str(file).encode()).hexdigest()[:12] + "_" + file.stem


def class_id(cls) -> str:
    """A class's identity across imports: ``module.Qualname``, where a module of the user's own folder counts as
    its file (imported by name from the working directory, or by path, it is the same class)."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if "." not in cls.__module__ and not cls.__module__.startswith("ppvae_user_") and file and _user_file(file):
        return f"{_file_module(Path(file).resolve())}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_file(file: Path, kind: str, path: str):
    # One module per file, named after its path, so that a class loaded twice is the same class.
    name = _file_module(file)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_path(file.parent):  # its sibling modules import as they would from a script in that folder
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ValueError(f"{kind} {path!r}: importing {str(file)!r} failed ({type(e).__name__}: {e})") from None
    module.__ppvae_file__ = str(file)
    return module


def import_path(cls) -> str:
    """The import path that loads ``cls`` again from any directory, or ``ValueError`` saying why there is none."""
    module = sys.modules.get(cls.__module__)
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise ValueError(f"{qualname} is defined inside a function, so nothing can import it again; define it at "
                         f"the top level of a module")
    file = getattr(module, "__ppvae_file__", None)
    if file is not None:
        return f"{file}:{qualname}"
    if cls.__module__ == "__main__":
        raise ValueError(f"{qualname} is defined in the script being run (__main__), which cannot be imported "
                         f"again without running it; move it into a module (my_models.py) and import it from there")
    file = getattr(module, "__file__", None)
    if "." not in cls.__module__ and file is not None and _user_file(file):
        # a module of the user's own folder (imported from the working directory or a notebook's): by its file,
        # so that the run directory finds it from any folder
        return f"{Path(file).resolve()}:{qualname}"
    return f"{cls.__module__}:{qualname}"


def _user_file(file: str) -> bool:
    """A source file that is not part of an installed package or the standard library."""
    import sysconfig

    resolved = str(Path(file).resolve())
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}
    return resolved.endswith(".py") and not any(resolved.startswith(str(Path(r).resolve())) for r in roots)


_VERSIONED = ("ppvae", "torch", "pyro", "builtins")  # packages whose code is pinned by their version, not hashed


def source_fingerprint(cls) -> dict[str, str]:
    """{file: sha256} of the user-code files that define ``cls`` and its bases (ppvae's own are versioned)."""
    out = {}
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] not in _VERSIONED:
            out.update(file_fingerprint(getattr(sys.modules.get(klass.__module__), "__file__", None)))
    return out


def file_fingerprint(file: str | None) -> dict[str, str]:
    """{absolute path: sha256} of a source file, or {} for none."""
    if file is None or not Path(file).is_file():
        return {}
    return {str(Path(file).resolve()): hashlib.sha256(Path(file).read_bytes()).hexdigest()}


def registered_name(obj) -> str:
    """The name a registry knows ``obj``'s class by, else its import path."""
    return type(obj).__dict__.get("registry_name") or import_path(type(obj))


def describe(obj, structural: int = 0) -> dict[str, Any]:
    """The spec dict ``{"name": ..., **options}`` that rebuilds ``obj`` (a built component).

    Registered components and any object with a ``spec()`` method describe themselves. Otherwise (a user's
    plain ``nn.Module``) the name is its import path and the options are the constructor's parameters after
    the first ``structural`` ones (which the builder supplies), read from attributes of the same name, the
    convention of scikit-learn's ``get_params``. A parameter with no such attribute cannot be recorded.
    """
    if callable(getattr(obj, "spec", None)):
        return obj.spec()
    out: dict[str, Any] = {"name": registered_name(obj)}
    params = list(inspect.signature(type(obj).__init__).parameters.values())[1:]  # past self
    for i, p in enumerate(params):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or (i < structural and p.kind is not p.KEYWORD_ONLY):
            continue
        if not hasattr(obj, p.name):
            raise ValueError(f"cannot record how to rebuild {type(obj).__qualname__}: its constructor takes "
                             f"{p.name!r} but the object has no attribute {p.name!r} holding the value; store it "
                             f"(self.{p.name} = {p.name}) or give the class a spec() method")
        out[p.name] = plain(getattr(obj, p.name))
    return out


def plain(value: Any) -> Any:
    """Tuples become lists so that a spec survives a TOML round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


_ENTRY_POINTS_LOADED = False
_BUILTINS_LOADED = False
#: the modules whose import registers ppvae's own components, families, datasets and transforms
BUILTIN_MODULES = ("ppvae.components.beta", "ppvae.components.likelihoods", "ppvae.components.nets",
                   "ppvae.components.optimizers", "ppvae.components.priors", "ppvae.inference.objectives",
                   "ppvae.inference.contract", "ppvae.guides", "ppvae.models", "ppvae.data", "ppvae.data.transforms")


def load_builtins() -> None:
    """Import the modules that register ppvae's own names (once; the package imports nothing until needed)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _load_entry_points() -> None:
    """Register what installed packages declare in the ``ppvae.components`` entry-point group (once)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        kind, _, name = ep.name.partition(".")
        if kind not in _ALL or not name:
            raise ValueError(f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} (from {ep.value!r}) must be "
                             f"named <kind>.<name> with kind one of: {', '.join(sorted(_ALL))}")
        registry = _ALL[kind]
        if name not in registry._entries:
            registry._entries[name] = _Lazy(ep, registry, name)


class _Lazy:
    """An entry point, imported when it is first built (so a broken plugin breaks only its own name)."""

    def __init__(self, ep, registry: Registry, name: str):
        self.ep, self.registry, self.name = ep, registry, name

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def load(self):
        try:
            cls = self.ep.load()
        except Exception as e:
            raise ValueError(f"{self.registry.kind} {self.name!r} (entry point {self.ep.value!r}): import failed "
                             f"({type(e).__name__}: {e})") from None
        self.registry._entries[self.name] = cls
        cls.registry_name = self.name
        return cls

    @property
    def __signature__(self):
        return inspect.signature(self.load())


def brief(value) -> str:
    """A value as a short line for an error message: an array or tensor by its type and shape, a module or dataset
    whose repr runs over lines by its type (and name), anything else by its repr."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    if "\n" in text or len(text) > 100:
        name = getattr(value, "name", None)
        return f"a {type(value).__name__}" + (f" {name!r}" if isinstance(name, str) else "")
    return text


def int_option(value, least: int, what: str) -> int:
    """``value`` as an int, or ``ValueError`` saying ``what`` must be an integer >= ``least`` (floats such as
    2.5, booleans and strings are refused rather than truncated)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= least
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{what} must be an integer >= {least}, got {brief(value)}")
    return int(value)


def int_list_option(value, least: int, what: str) -> list[int]:
    """Layer sizes: one int or a list of ints, as a list, each checked by :func:`int_option`."""
    return [int_option(v, least, what) for v in ([value] if isinstance(value, int) else value)]


MODELS = Registry("model", "model")
PRIORS = Registry("prior", "prior")
LIKELIHOODS = Registry("likelihood", "likelihood")
BETAS = Registry("beta schedule", "beta")
OBJECTIVES = Registry("objective", "objective")
ENCODERS = Registry("encoder", "encoder")
DECODERS = Registry("decoder", "decoder")
GUIDES = Registry("guide", "guide")
OPTIMIZERS = Registry("optimizer", "optimizer")
DATASETS = Registry("dataset", "data")
TRANSFORMS = Registry("transform", "transform")


def registry_for(section: str) -> Registry:
    return _ALL[section]


def component(registry: Registry, value: Any, *structural) -> Any:
    """``value`` may be a registered name (``"normal"``), an import path (``"my_priors:LaplacePrior"``), a spec
    dict (``{"name": "normal", ...}``) or an already-built component, which is returned as it is."""
    if isinstance(value, str):
        return registry.build(value, *structural)
    if isinstance(value, dict):
        options = dict(value)
        if "name" not in options:
            raise ValueError(f"a {registry.kind} spec needs a 'name'; choose one of: {', '.join(registry.names)}")
        return registry.build(options.pop("name"), *structural, **options)
    return value


class Component:
    """Mixin for registered components: a built component can tell the spec that rebuilds it.

    Convention (as in scikit-learn's ``get_params``): structural arguments that the builder supplies
    (latent size, data shape) are positional; options a user may set in a spec are keyword-only and are
    stored on the instance under the same name. ``spec()`` reads them back.
    """

    def spec(self) -> dict[str, Any]:
        params = inspect.signature(type(self).__init__).parameters.values()
        out: dict[str, Any] = {"name": registered_name(self)}
        for p in params:
            if p.kind is p.KEYWORD_ONLY:
                out[p.name] = plain(getattr(self, p.name))
        return out
