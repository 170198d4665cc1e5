"""Turn a name, a spec dict or a ready object into a component."""

from __future__ import annotations

from typing import Any

from .registry import Registry


def component(registry: Registry, value: Any, *structural) -> Any:
    """``value`` may be a registered name (``"normal"``), a spec dict (``{"name": "normal", ...}``) or an
    already-built component, which is returned as it is."""
    if isinstance(value, str):
        return registry.build(value, *structural)
    if isinstance(value, dict):
        options = dict(value)
        if "name" not in options:
            raise ValueError(f"a {registry.kind} spec needs a 'name'; choose one of: {', '.join(registry.names)}")
        return registry.build(options.pop("name"), *structural, **options)
    return value


def names_of(section: str) -> list[str]:
    """The names a spec's component ``section`` may take (for error messages)."""
    from . import models  # noqa: F401  (importing the model registers every component)
    from .registry import BETAS, DECODERS, ENCODERS, GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS
    from .train import _OPTIMIZERS

    registries = {"encoder": ENCODERS, "decoder": DECODERS, "guide": GUIDES, "prior": PRIORS,
                  "likelihood": LIKELIHOODS, "beta": BETAS, "objective": OBJECTIVES}
    return sorted(_OPTIMIZERS) if section == "optimizer" else registries[section].names
