"""``ppvae export``."""

from __future__ import annotations

HELP = ("write a run's trained model (spec, weights, rebuild record) to one file, "
        "for ppvae.load(FILE)")
FLAGS = ("run", "checkpoint")


def add_arguments(p) -> None:
    p.add_argument("out", help="the file to write, e.g. model.pt")


def run(args) -> int:
    from ..inference.checkpoint import load_checkpoint
    from ..inference.run import export

    path = export(args.run, args.out, checkpoint=args.checkpoint)
    epoch = len(load_checkpoint(path, map_location="cpu")["metrics"])  # as ppvae.load(path).epoch, without a rebuild
    print(f"wrote {path} (epoch {epoch}, {path.stat().st_size / 2**20:.1f} MiB); in Python: ppvae.load({str(path)!r})")
    return 0
