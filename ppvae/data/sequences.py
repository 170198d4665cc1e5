"""Token sequences: a vocabulary with special tokens, and integer batches padded to one length.

A sequence of tokens t_1..t_L is stored as the row ``[id(t_1), ..., id(t_L), END, PAD, ..., PAD]`` of length
``max_length + 1``: the end token is part of what a model predicts, padding is not (``mask = x != PAD``). The
vocabulary's first four entries are the special tokens, at fixed ids, so every vocabulary agrees on them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import torch

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")


class Vocabulary:
    """Token <-> id, with the special tokens first. ``tokens`` lists the ordinary tokens (sorted by the
    builder, so a vocabulary is a deterministic function of the data)."""

    def __init__(self, tokens: Iterable[str]):
        tokens = [t for t in tokens if t not in SPECIALS]
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.itos = [*SPECIALS, *tokens]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[list[str]]) -> Vocabulary:
        counts = Counter(t for seq in sequences for t in seq)
        return cls(sorted(counts))

    @property
    def tokens(self) -> list[str]:
        """The ordinary tokens (what a spec records; the specials are implied)."""
        return self.itos[len(SPECIALS):]

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, sequences: list[list[str]], max_length: int, *, unknown: str = "error") -> torch.Tensor:
        """(N, max_length + 1) long: ids, END, then PAD. A sequence longer than ``max_length`` or, with
        ``unknown="error"``, a token outside the vocabulary is refused in one line (``"unk"`` maps it to UNK)."""
        out = torch.full((len(sequences), max_length + 1), PAD, dtype=torch.long)
        for row, seq in enumerate(sequences):
            if len(seq) > max_length:
                raise ValueError(f"sequence {row} has {len(seq)} tokens, more than the model's maximum length "
                                 f"{max_length}: {''.join(seq)[:60]!r}")
            ids = []
            for t in seq:
                i = self.stoi.get(t)
                if i is None or i < len(SPECIALS):
                    if unknown != "unk":
                        raise ValueError(f"token {t!r} (in sequence {row}: {''.join(seq)[:60]!r}) is not in the "
                                         f"vocabulary of {len(self.tokens)} tokens")
                    i = UNK
                ids.append(i)
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            out[row, len(ids)] = END
        return out

    def decode(self, ids: torch.Tensor) -> list[list[str]]:
        """Token lists from rows of ids, each up to (not including) its first END or PAD."""
        out = []
        for row in ids.tolist():
            seq = []
            for i in row:
                if i in (END, PAD):
                    break
                if i != START:
                    seq.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
            out.append(seq)
        return out


def lengths(x: torch.Tensor) -> torch.Tensor:
    """Tokens per row up to and including its first END token (the positions a model predicts); what follows
    the END token, padding or not, is not part of the sequence."""
    is_end = x == END
    first = is_end.int().argmax(-1)
    return torch.where(is_end.any(-1), first + 1, torch.full_like(first, x.shape[-1]))


def sequence_mask(x: torch.Tensor) -> torch.Tensor:
    """True at the positions of each row up to and including its first END token."""
    return torch.arange(x.shape[-1], device=x.device) < lengths(x).unsqueeze(-1)


def check_tokens(x: torch.Tensor, vocab_size: int, max_length: int, who: str) -> None:
    """Refuse token batches a sequence model cannot score: not integer, wrong length, ids outside the vocabulary,
    or a row with no END token."""
    if x.is_floating_point() or x.dim() != 2:
        raise ValueError(f"{who} reads integer token rows (N, max_length + 1), got {x.dtype} of shape {tuple(x.shape)}")
    if x.shape[1] != max_length + 1:
        raise ValueError(f"{who} was built for sequences of at most {max_length} tokens (rows of {max_length + 1}), "
                         f"but the data has rows of {x.shape[1]}")
    bad = (x < 0) | (x >= vocab_size)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"token id {int(x[row, col])} at row {row}, position {col} is outside the vocabulary of "
                         f"{vocab_size} ids")
    if not bool((x == END).any(-1).all()):
        row = int((~(x == END).any(-1)).nonzero()[0])
        raise ValueError(f"row {row} of the token data has no end token; sequences are stored as ids, END, PAD...")


def per_token(log_likelihoods: torch.Tensor, x: torch.Tensor) -> dict:
    """Per-token figures of sentence log-likelihoods (N,) of token rows x: the tokens predicted (each sentence's
    tokens and its end token), the negative log-likelihood per token in nats, and the perplexity exp(that)."""
    tokens = int(lengths(x).sum())
    nll = -float(log_likelihoods.double().sum()) / tokens
    return {"tokens": tokens, "nll": nll, "perplexity": math.exp(nll)}
