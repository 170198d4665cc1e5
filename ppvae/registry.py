"""Name -> component registries.

Every swappable component (prior, likelihood, beta schedule, objective, network) is registered under a short
name, so a spec file or a CLI override can pick it by name and a built component can say which name and
arguments rebuild it. Adding a component is one class plus one ``@REGISTRY.register("name")`` line.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


class Registry:
    """A mapping from names to constructors, with errors that list what is allowed."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        def decorator(cls):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names)}"
            ) from None

    def build(self, name: str, *args, **options) -> Any:
        """Construct ``name`` from structural ``args`` and user ``options``; unknown options are named."""
        cls = self.get(name)
        params = inspect.signature(cls).parameters.values()
        allowed = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            unknown = sorted(set(options) - set(allowed))
            if unknown:
                raise ValueError(
                    f"{self.kind} {name!r} got unknown option(s) {', '.join(unknown)}; "
                    f"it accepts: {', '.join(allowed) or 'no options'}"
                )
        return cls(*args, **options)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def int_option(value, least: int, what: str) -> int:
    """``value`` as an int, or ``ValueError`` saying ``what`` must be an integer >= ``least`` (floats such as
    2.5, booleans and strings are refused rather than truncated)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= least
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{what} must be an integer >= {least}, got {value!r}")
    return int(value)


def int_list_option(value, least: int, what: str) -> list[int]:
    """Layer sizes: one int or a list of ints, as a list, each checked by :func:`int_option`."""
    return [int_option(v, least, what) for v in ([value] if isinstance(value, int) else value)]


PRIORS = Registry("prior")
LIKELIHOODS = Registry("likelihood")
BETAS = Registry("beta schedule")
OBJECTIVES = Registry("objective")
ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
GUIDES = Registry("guide")


class Component:
    """Mixin for registered components: a built component can tell the spec that rebuilds it.

    Convention (as in scikit-learn's ``get_params``): structural arguments that the builder supplies
    (latent size, data shape) are positional; options a user may set in a spec are keyword-only and are
    stored on the instance under the same name. ``spec()`` reads them back.
    """

    registry_name: str = ""

    def spec(self) -> dict[str, Any]:
        params = inspect.signature(type(self).__init__).parameters.values()
        out: dict[str, Any] = {"name": self.registry_name}
        for p in params:
            if p.kind is p.KEYWORD_ONLY:
                out[p.name] = _plain(getattr(self, p.name))
        return out


def _plain(value: Any) -> Any:
    """Tuples become lists so that a spec survives a TOML round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
