"""``ppvae export``."""

from __future__ import annotations

HELP = ("write a run's trained model (spec, weights, rebuild record) to one file, "
        "for ppvae.load(FILE)")
FLAGS = ("run", "checkpoint",)


def add_arguments(p) -> None:
    p.add_argument("out", help="the file to write, e.g. model.pt")


def run(args) -> int:
    from ..inference.run import export, load

    path = export(args.run, args.out, checkpoint=args.checkpoint)
    epoch = load(path).epoch
    print(f"wrote {path} (epoch {epoch}, {path.stat().st_size / 2**20:.1f} MiB); in Python: ppvae.load({str(path)!r})")
    return 0
