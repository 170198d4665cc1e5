r"""Attribute vectors: the difference of two groups' mean codes, and editing by moving along it.

.. math:: v = \bar z_{B} - \bar z_{A}, \qquad x_{\text{edit}}(s) = \mathrm{decode}(\mathrm{encode}(x) + s\,v)

(White 2016, "Sampling generative networks"; Larsen et al. 2016 for face attributes). The groups are classes
or the two values of any binary attribute column; the codes are the guide's point summaries (``encode``).
At strength 0 an edit is the reconstruction.
"""

from __future__ import annotations

import torch

from ..inference.program import conditional, require


def _group(labels: torch.Tensor, value: int, what: str) -> torch.Tensor:
    rows = labels == value
    if not bool(rows.any()):
        present = ", ".join(map(str, torch.unique(labels).tolist()))
        raise ValueError(f"{what} {value}: no example has that label (labels present: {present})")
    return rows


@torch.no_grad()
def attribute_vector(model, x: torch.Tensor, labels: torch.Tensor, source: int, target: int,
                     chunk: int = 1000) -> torch.Tensor:
    """mean code of the examples labelled ``target`` minus that of those labelled ``source``."""
    if conditional(model):
        raise ValueError(f"{type(model).__name__} conditions on its label; to change the class, change the label "
                         f"(ppvae sample RUN --label K) instead of moving its code")
    encode = require(model, "encode", "an attribute vector")
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(f"an attribute vector needs one label per example (a class, or a 0/1 attribute column), "
                         f"got labels of shape {tuple(labels.shape)} for {len(x)} examples")
    a, b = _group(labels, source, "--from-label"), _group(labels, target, "--to-label")
    codes = torch.cat([encode(x[s:s + chunk]) for s in range(0, len(x), chunk)])
    return codes[b].mean(0) - codes[a].mean(0)


@torch.no_grad()
def edit(model, x: torch.Tensor, vector: torch.Tensor, strengths) -> torch.Tensor:
    """(N, len(strengths), *event): ``decode(encode(x) + s * vector)`` for each strength s."""
    z = require(model, "encode", "an edit")(x)
    decode = require(model, "decode", "an edit")
    return torch.stack([decode(z + float(s) * vector) for s in strengths], 1)


def attribute_labels(y: torch.Tensor | None, attribute: int | None, data_name: str) -> torch.Tensor:
    """The labels an edit groups by: the class labels, or column ``attribute`` of factor labels (N, K)."""
    if y is None:
        raise ValueError(f"ppvae edit needs labels, but {data_name!r} has none")
    if y.ndim == 2:
        if attribute is None or not 0 <= attribute < y.shape[1]:
            raise ValueError(f"the labels are {y.shape[1]} factor columns; choose one with --attribute "
                             f"0..{y.shape[1] - 1}")
        return y[:, attribute]
    return y


def judge_edits(x_train: torch.Tensor, y_train: torch.Tensor, strips: torch.Tensor, target: int, *,
                seed: int = 0) -> list[float]:
    """Whether the edits reach the target group, by a judge that is not the model: the benchmarks' small classifier,
    trained on the real training data; the mean P(target) over the edited examples at each strength (each column of
    ``strips``, shaped (N, strengths, *event))."""
    from ..evaluate.classify import train_classifier

    judge = train_classifier(x_train, y_train, int(y_train.max()) + 1, steps=1000, seed=seed)
    with torch.no_grad():
        return [judge(strips[:, i]).softmax(-1)[:, target].mean().item() for i in range(strips.shape[1])]
