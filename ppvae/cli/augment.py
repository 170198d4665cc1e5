"""``ppvae augment``."""

from __future__ import annotations

from .common import at_least, load

HELP = "write labelled samples of every class from a conditional model (cvae, m2)"
FLAGS = ("run", "checkpoint", "device", "seed")


def add_arguments(p) -> None:
    p.add_argument("--per-class", type=at_least(1), required=True, help="samples of each class")
    p.add_argument("--out", required=True, help="the .npz to write (arrays x and y; read back with data.name=file)")


def run(args) -> int:
    from ..apps.augment import synthesize, write_npz

    if not args.out.endswith(".npz"):  # before the run is loaded: a typo costs nothing
        raise ValueError(f"--out must name an .npz file (the 'file' dataset reads its arrays "
                         f"x and y), got {args.out!r}")
    run = load(args)
    x, y = synthesize(run.model, args.per_class, seed=args.seed)
    path = write_npz(args.out, x, y)
    names = run.spec["data"]["name"]
    print(f"wrote {path}: {len(y)} samples ({args.per_class} of each of {run.model.num_classes} classes, E[x | z, y] "
          f"from {names}'s {run.spec['model']['name']} run); train on them with --set data.name=file "
          f"--set data.path={path}")
    return 0
