"""``ppvae reconstruct``."""

from __future__ import annotations

from .common import at_least, load, out_path, save_images, test_batch, write_lines

HELP = "test inputs next to their reconstructions"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("-n", type=at_least(1), default=8, help="number of test examples (default: 8)")
    p.add_argument("--draws", action="store_true",
                   help="replay the model on a draw of the guide and draw the observation (derived from the traces) "
                        "instead of decoding the posterior means")


def run(args) -> int:
    from ..batch import as_batch
    from ..inference.contract import output_of
    from ..inference.program import require

    run = load(args)
    reconstruct = require(run.model, "reconstruct", "ppvae reconstruct")
    inputs = test_batch(run, args.n)
    strings = output_of(run.model).text
    if args.draws and strings:
        raise ValueError("--draws applies to models whose outputs are not token strings")
    if strings:
        pairs = list(zip(run.model.strings(inputs), reconstruct(inputs)))
        for a, b in pairs:
            print(f"  input: {a}\n  recon: {b}\n")
        path = out_path(args, "reconstructions.txt")
        write_lines(path, ["input\treconstruction", *(f"{a}\t{b}" for a, b in pairs)])
        print(f"{sum(a == b for a, b in pairs)} of {len(pairs)} reconstructed exactly; wrote {path}")
        return 0
    x = as_batch(inputs)["x"] if isinstance(inputs, dict) else inputs
    values = run.program.reconstruct(inputs, draws=True) if args.draws else reconstruct(inputs)
    path = save_images(args, "reconstructions_draws" if args.draws else "reconstructions", values, like=x)
    print(f"wrote {path}")
    return 0
