"""Sentence VAEs (Bowman et al. 2016): held-out per-word likelihood, perplexity, KL and active units, and
homotopies, the sentences decoded along a line between two encoded sentences.

Per-word figures count every token a model predicts: each sentence's words and punctuation marks and its end
token. The negative log-likelihood is the IWAE bound's (an upper bound on -log p(x) in expectation; exact for
the language model, which has no latent variable), so the perplexity exp(NLL per token) is an upper bound too.
"""

from __future__ import annotations

import math

import torch

from ..data.sequences import per_token
from ..data.text import encode_sentences
from ..evaluate import diagnostics as diag
from ..evaluate.elbo import evaluate_elbo, iwae_log_likelihood
from ..evaluate.latent import lerp, slerp
from ..inference.contract import output_of
from ..progress import Stages


def text_metrics(model, x: torch.Tensor, *, num_samples: int = 100, seed: int = 0, progress: bool = True) -> dict:
    """Held-out figures of a sequence model on token rows ``x``: the IWAE log-likelihood (K = ``num_samples``)
    per sentence and per token, the perplexity, the ELBO's KL and the active units (none for a language model).
    ``progress``: a bar over these, and one over the sentences inside each."""
    if not output_of(model).text:
        raise ValueError(f"{type(model).__name__} is not a sequence model; text metrics need sequence_vae or "
                         f"sequence_lm trained on text (data.name = fortunes, bible or text)")
    latent = bool(getattr(model, "latent_dim", 0))
    with Stages("text metrics", 2 + latent, progress) as stage:
        stage(f"IWAE, K={num_samples}")
        ll = iwae_log_likelihood(model, x, num_samples, seed=seed, progress=progress)
        stage("ELBO")
        elbo = evaluate_elbo(model, x, seed=seed, progress=progress)
        units = 0
        if latent:
            stage("active units")
            units = diag.active_units(model, x, seed=seed, progress=progress)[0]
    tokens = per_token(ll, x)
    return {"sentences": int(x.shape[0]), "num_samples": num_samples, "seed": seed,
            "log_likelihood": float(ll.mean()), "elbo": elbo["elbo"], "kl": elbo["kl"],
            "nll_per_token": tokens["nll"], "perplexity": tokens["perplexity"], "tokens": tokens["tokens"],
            "active_units": int(units), "latent_dim": int(getattr(model, "latent_dim", 0))}


def encode_text(model, sentences: list[str]) -> torch.Tensor:
    """Token rows of sentences for a trained text model (its lower-casing; unknown words become the unknown
    token; a sentence of only unknown words or over the maximum length refused in one line)."""
    if model.representation not in ("words", "cased-words"):
        raise ValueError(f"this model reads {model.representation} tokens, not words; sentences apply to a model "
                         f"trained on text (data.name = fortunes, bible or text)")
    x = encode_sentences(model.vocab, sentences, model.max_length, lowercase=model.representation == "words")
    return x.to(next(model.parameters()).device)


@torch.no_grad()
def homotopy(model, start: str | torch.Tensor, end: str | torch.Tensor, steps: int = 8,
             method: str = "linear") -> list[str]:
    """Sentences decoded greedily along the path between two sentences' posterior means (Bowman et al. 2016,
    Table 7): ``linear`` interpolation or ``spherical`` (slerp). The ends are sentences or token rows."""
    if method not in ("linear", "spherical"):
        raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")
    device = next(model.parameters()).device
    rows = torch.cat([encode_text(model, [end_]) if isinstance(end_, str) else end_.reshape(1, -1).to(device)
                      for end_ in (start, end)])
    z = model.encode(rows)
    path = (lerp if method == "linear" else slerp)(z[:1], z[1:], steps).reshape(steps, -1)
    return model.decode(path)


def ratio_table(rows: dict[str, dict], reference: str,
                keys=("nll_per_token", "perplexity", "kl", "active_units")) -> str:
    """A table of settings x figures with each setting's per-token NLL over the reference's (the language model)."""
    head = f"{'setting':<28}" + "".join(f"{k:>15}" for k in keys) + f"   NLL / {reference}"
    lines = [head]
    base = rows[reference]["nll_per_token"]
    for name, r in rows.items():
        cells = "".join(f"{r[k]:>15.3f}" if isinstance(r[k], float) else f"{r[k]:>15}" for k in keys)
        lines.append(f"{name:<28}{cells}{r['nll_per_token'] / base if base else math.nan:>11.3f}")
    return "\n".join(lines)
