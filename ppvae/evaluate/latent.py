"""Paths through the latent space: linear and spherical interpolation between two codes."""

from __future__ import annotations

import warnings

import torch

from ..batch import as_batch, batch_size, take
from ..inference.program import Program, program, require
from ..registry import brief, int_option

METHODS = ("linear", "spherical")


def lerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Points on the segment from z0 to z1, shape ``(steps, *z0.shape)``: z0 + t (z1 - z0) for t evenly spaced in
    [0, 1]."""
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype).view(-1, *[1] * z0.dim())
    return z0 + t * (z1 - z0)


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    r"""Spherical interpolation (Shoemake 1985; White 2016 for generative models).

    .. math:: z(t) = \frac{\sin((1-t)\Omega)}{\sin\Omega} z_0 + \frac{\sin(t\Omega)}{\sin\Omega} z_1,
              \quad \cos\Omega = \frac{z_0 \cdot z_1}{\|z_0\|\|z_1\|}

    Under a Gaussian prior most mass lies near a sphere of radius sqrt(D); the straight line between two
    codes passes through the low-norm interior, slerp stays near the shell. Falls back to lerp for
    (anti)parallel codes, where the arc is undefined.
    """
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype).view(-1, *[1] * (z0.dim() - 1), 1)
    cos = (z0 * z1).sum(-1, keepdim=True) / (z0.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True) + eps)
    omega = torch.arccos(cos.clamp(-1, 1))
    so = torch.sin(omega)
    degenerate = so < 1e-3  # (anti)parallel: 1/sin(omega) would blow the path up, and the arc is undefined
    arc = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / so.clamp_min(1e-3)
    return torch.where(degenerate, lerp(z0, z1, steps), arc)


@torch.no_grad()
def interpolate(model, x0: torch.Tensor, x1: torch.Tensor, steps: int = 10, method: str = "linear") -> torch.Tensor:
    """Decode a path between the codes of ``x0`` and ``x1`` (batches of pairs); needs the model's ``encode``
    and ``decode``.

    Returns ``(n_pairs, steps, *decoded_shape)``: row i walks from x0[i] to x1[i].

    Each end is encoded to a point code (``encode``: the model's own, else the means of the guide's latent
    sites), ``steps`` codes are taken on the path between the two, and each is decoded (``decode``: the model's
    own, else the means of its output distributions, not draws). Runs without gradients.

    :param model: a trained model with ``encode`` and ``decode``, declared or derived by ppvae from its traces
        (``run.model``, a :class:`~ppvae.Run`, or any object with those two methods).
    :param x0: the starting examples, on the model's device: a tensor ``(n_pairs, *event_shape)`` or a batch
        mapping (with the labels or other keys the model reads).
    :param x1: the end examples, as many as in ``x0``.
    :param steps: the codes on each path, both ends included, an integer >= 2.
    :param method: ``"linear"`` (evenly spaced points on the straight line between the codes) or
        ``"spherical"`` (slerp: along the arc between them, which keeps a Gaussian prior's typical norm).
    :returns: a tensor of shape ``(n_pairs, steps, *decoded_shape)``; ``[i, 0]`` decodes the code of
        ``x0[i]`` and ``[i, -1]`` that of ``x1[i]``.
    :raises ValueError: if ``method`` is neither name, ``steps`` is below 2, ``x0`` and ``x1`` hold different
        numbers of examples or give codes of different shapes; or
        (:class:`~ppvae.MissingCapability`) if the model can neither declare nor derive ``encode`` or ``decode``.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown interpolation method {brief(method)}; choose one of: {', '.join(METHODS)}")
    steps = int_option(steps, 2, "interpolation steps")
    n0, n1 = batch_size(as_batch(x0)), batch_size(as_batch(x1))
    if n0 != n1:
        raise ValueError(f"interpolation pairs x0[i] with x1[i], so both ends need as many examples; got {n0} and {n1}")
    encode, decode = require(model, "encode", "interpolation"), require(model, "decode", "interpolation")
    z0, z1 = encode(x0), encode(x1)
    if z0.shape != z1.shape:
        raise ValueError(f"the two ends' codes have shapes {tuple(z0.shape)} and {tuple(z1.shape)}; a program whose "
                         f"latent sites depend on the rows (a sequence model's on their lengths) has no one code space "
                         f"to interpolate in")
    path = (lerp if method == "linear" else slerp)(z0, z1, steps)  # (steps, pairs, D)
    pairs = path.shape[1]
    if isinstance(model, (torch.nn.Module, Program)) and not program(model).declares("decode"):
        # a decode derived from the traces takes each path's arguments from its first end (a CVAE's input half)
        decoded = decode(path.flatten(0, 1), context=take(as_batch(x0), torch.arange(pairs).repeat(steps)))
    else:
        decoded = decode(path.flatten(0, 1))
    return decoded.view(steps, pairs, *decoded.shape[1:]).transpose(0, 1)


class Conditioned:
    """A conditional model (CVAE, M2, a program with label arguments) seen as an unconditional one with its label
    fixed to ``label``: ``encode(x)`` and ``decode(z)`` as for a VAE, so interpolations and traversals run within
    one class."""

    def __init__(self, model, label: int):
        self.model, self.label = program(model), int(label)

    def encode(self, x) -> torch.Tensor:
        batch = as_batch(x)
        x = batch["x"]
        return self.model.encode({**batch, "y": torch.full((x.shape[0],), self.label, device=x.device)})

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z, self.label)

    def parameters(self):
        return self.model.parameters()


@torch.no_grad()
def check_path(decoded: list[str], ends: tuple[str, str], what: str = "sequence", same=None) -> list[str]:
    """The warnings an interpolation path between two sequences earns, each one line (and warned): ends that do
    not decode back to the inputs they were encoded from (the path then says little about them), and steps that
    all decode to the same thing (the decoder ignores the code along it: posterior collapse). ``same(a, b)``
    compares two decodings (default: equal strings; molecules compare canonical SMILES)."""
    same = same or (lambda a, b: a == b)
    said = []
    off = [(i, decoded[i], end) for i, end in ((0, ends[0]), (len(decoded) - 1, ends[1])) if not same(decoded[i], end)]
    if off:
        said.append("the path's ends do not reconstruct: " + "; ".join(
            f"step {i} decodes to {got!r}, not {end!r}" for i, got, end in off)
            + f" (the model does not encode these {what}s faithfully, so the path says little about them)")
    if len(decoded) > 2 and all(same(d, decoded[0]) for d in decoded[1:]):
        said.append(f"all {len(decoded)} steps decode to the same {what} ({decoded[0]!r}): the decoder ignores the "
                    f"code along this path (posterior collapse? see the KL per site in metrics.csv)")
    for line in said:
        warnings.warn(line, stacklevel=2)
    return said


def class_grid(model, columns: int = 8) -> torch.Tensor:
    """(num_classes, columns, *event): row c is ``generate(columns, y=c)``, each row from the same random state,
    so a column decodes the same draw (the same z, or the same noise of a conditional prior) for every class; the
    global random state is left as it was."""
    p = program(model)
    generate = p.require("generate", "the class grid")
    if not p.conditional:
        raise ValueError(f"the class grid needs a model that generates a given class (cvae, m2, a program with an "
                         f"argument bound to the labels); {p.name} does not condition on a label")
    device = p.device
    rows = []
    for c in range(p.num_classes):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # each row from this state
            rows.append(generate(columns, c))
    return torch.stack(rows)
