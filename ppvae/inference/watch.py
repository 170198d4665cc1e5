"""What the trainer watches for after each epoch, to tell the user while the run can still be changed: a latent
site whose posterior has collapsed onto its prior.

Posterior collapse (Bowman et al. 2016; Lucas et al. 2019): the KL of a latent site falls to nearly zero, q(z | x)
becomes the prior for every x, and the decoder models the data alone. The per-site KL the trainer logs on held-out
data (``val_kl_<site>``) shows it; a site under ``COLLAPSE_NATS`` for ``COLLAPSE_EPOCHS`` epochs in a row is named
once, in one line, with the cures ppvae has.
"""

from __future__ import annotations

import warnings

#: a latent site carrying less than this (nats per example, on held-out data) ...
COLLAPSE_NATS = 0.5
#: ... for this many epochs in a row has collapsed
COLLAPSE_EPOCHS = 3
CURES = ("KL annealing (beta.name=linear with beta.warmup_epochs=10, or beta.name=cyclical), free bits "
         "(objective.name=free_bits), a beta below 1, word dropout for a sequence decoder (model.word_dropout=0.3), "
         "or a weaker decoder")


class CollapseWatch:
    """Warns once per latent site whose held-out KL stayed under :data:`COLLAPSE_NATS` for
    :data:`COLLAPSE_EPOCHS` epochs."""

    def __init__(self, held_out: str):
        self.prefix = f"{held_out}_kl_"
        self.warned: set[str] = set()

    def epoch(self, metrics: list[dict]) -> None:
        if len(metrics) < COLLAPSE_EPOCHS:
            return
        last = metrics[-COLLAPSE_EPOCHS:]
        for key in last[-1]:
            site = key[len(self.prefix):]
            if not key.startswith(self.prefix) or site in self.warned:
                continue
            if all(row.get(key, COLLAPSE_NATS) < COLLAPSE_NATS for row in last):
                self.warned.add(site)
                warnings.warn(f"posterior collapse: latent site {site!r} has carried under {COLLAPSE_NATS} nats "
                              f"per example for {COLLAPSE_EPOCHS} epochs (KL {last[-1][key]:.3f} at epoch "
                              f"{last[-1]['epoch']}): q({site} | x) is its prior and the decoder ignores it. Cures: "
                              f"{CURES}", stacklevel=4)
