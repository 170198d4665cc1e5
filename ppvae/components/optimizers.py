"""Optimizers a spec can name: torch's, registered like every other component.

``optimizer.name = "adam"`` with the rest of the section passed to the torch class (``lr``, ``weight_decay``,
``betas``, ...); torch's own message names a keyword it does not take.
"""

from __future__ import annotations

import math

import torch

from ..registry import OPTIMIZERS, check_options

for _name, _cls in {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
                    "rmsprop": torch.optim.RMSprop}.items():
    OPTIMIZERS.register(_name)(_cls)


def make_optimizer(spec: dict, params) -> torch.optim.Optimizer:
    options = dict(spec)
    options.pop("groups", None)  # other parameter groups' optimisers (ppvae.inference.train.group_optimizer)
    name = options.pop("name")
    cls = OPTIMIZERS.get(name)
    if name in ("adam", "adamw"):
        # torch's fused Adam kernel (CPU and CUDA) updates all parameters in one pass: the same update rule,
        # about 1 ms less per step than the per-tensor loop for a small VAE on 2 CPU cores.
        options.setdefault("fused", True)
    check_options(cls, options, f"optimizer {name!r}", keyword_only=False)
    lr = options.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"optimizer.lr must be a positive finite number, got {lr!r}")
    try:
        return cls(params, **options)
    except (TypeError, ValueError) as e:  # torch's message names the bad keyword or value; add what is allowed
        raise ValueError(f"optimizer {name!r}: {e}; see torch.optim.{cls.__name__}") from None
