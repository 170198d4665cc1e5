"""What the verbs share: the flags declared once (each verb names those it takes in its ``FLAGS``), loading a run,
and writing its outputs beside it."""

from __future__ import annotations

import argparse
from pathlib import Path


def at_least(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    return parse


def _add_metric_sizes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-train", type=at_least(2), default=10000, help="codes for MIG and SAP (default: 10000)")
    p.add_argument("--num-eval", type=at_least(2), default=5000, help="held-out codes (default: 5000)")
    p.add_argument("--num-votes", type=at_least(2), default=1000,
                   help="BetaVAE / FactorVAE training points, each a batch of 64; half as many held "
                        "out (default: 1000)")
    p.add_argument("--dci-train", type=at_least(2), default=2000, help="codes DCI's boosted trees fit (default: 2000)")
    p.add_argument("--dci-eval", type=at_least(2), default=1000, help="held-out codes for DCI (default: 1000)")


# The flags more than one verb takes, by the name a verb's FLAGS gives them.
FLAGS = {
    "spec": lambda p: p.add_argument("spec", nargs="?", help="TOML spec file; omitted keys take the defaults"),
    "run": lambda p: p.add_argument("run", help="a run directory written by `ppvae train`"),
    "checkpoint": lambda p: p.add_argument(
        "--checkpoint", choices=("auto", "best", "last"), default="auto",
        help="which weights: best.pt (the best validation ELBO, kept by train.keep_best), the last checkpoint, or "
             "auto: the best where the run kept one (default: auto)"),
    "device": lambda p: p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)"),
    "seed": lambda p: p.add_argument("--seed", type=int, default=0, help="seed for the random draws (default: 0)"),
    "out": lambda p: p.add_argument("--out", help="output file (default: a PNG in RUN/figures/, a "
                                                  ".txt for sequence models)"),
    "figures": lambda p: p.add_argument("--no-figures", action="store_true", help="write no figures"),
    "quiet": lambda p: p.add_argument("--quiet", action="store_true", help="no progress bars"),
    "metric_sizes": _add_metric_sizes,
}


def add_flags(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in names:
        FLAGS[name](p)


def metric_sizes(args) -> dict:
    return {"num_train": args.num_train, "num_eval": args.num_eval, "num_votes": args.num_votes,
            "dci_train": args.dci_train, "dci_eval": args.dci_eval}


def load(args):
    import torch

    from ..inference.checkpoint import CHECKPOINT
    from ..inference.program import DERIVABLE
    from ..inference.run import load_run

    torch.manual_seed(args.seed)
    run = load_run(args.run, device=args.device, checkpoint=args.checkpoint)
    if run.checkpoint != CHECKPOINT:  # the weights are not the latest: say which
        print(f"read {Path(args.run) / run.checkpoint} (epoch {run.epoch}, the best validation ELBO; "
              f"--checkpoint last reads the latest)")
    if not all(run.program.declares(c) for c in DERIVABLE[:4]):
        run.data  # a capability derived from the traces shapes the program's arguments with rows of the data
    return run


def out_path(args, default: str) -> Path:
    return Path(args.out) if args.out else Path(args.run) / "figures" / default


def write_lines(path: Path, lines: list[str]) -> None:
    from ..inference.checkpoint import atomic_write_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def save_images(args, name: str, values, like=None) -> Path:
    """A grid of images where the values are images (beside ``like``, the inputs, where given); otherwise, as an
    output that is not an image (a vector, a sequence of another shape), the numbers themselves in an .npy."""
    import numpy as np

    from ..evaluate.figures import drawable
    from ..plots import plot_reconstructions, plot_samples

    values = values.detach().cpu()
    if drawable(values) and (like is None or values.shape[1:] == like.shape[1:]):
        path = out_path(args, f"{name}.png")
        if like is None:
            plot_samples(values, nrow=8, path=path)
        else:
            plot_reconstructions(like.cpu(), values, path=path, n=len(values))
        return path
    path = out_path(args, f"{name}.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, values.numpy())
    print(f"{name}: shape {tuple(values.shape)} (not images: saved as numbers)")
    return path


def test_batch(run, n: int | None = None):
    """The first n test examples as the batch the model reads (x, or the whole batch for a conditional model)."""
    from ..batch import take, to_device
    from ..evaluate.figures import model_inputs

    batch = to_device(take(run.data.batch("test"), slice(0, n)), next(run.model.parameters()).device)
    return model_inputs(run.model, batch)
