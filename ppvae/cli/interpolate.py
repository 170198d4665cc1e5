"""``ppvae interpolate``."""

from __future__ import annotations

import warnings

from .common import at_least, load, out_path, test_batch, write_lines

HELP = "decode paths between the codes of test examples"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("--method", choices=["linear", "spherical"], default="linear",
                   help="straight line or great-circle arc between the codes (default: linear)")
    p.add_argument("--steps", type=at_least(2), default=10, help="points along each path (default: 10)")
    p.add_argument("--pairs", type=at_least(1), default=4, help="paths, each between two test examples (default: 4)")
    p.add_argument("--between", nargs=2, metavar="TEXT",
                   help="sequence models: the two molecules (SMILES) or sentences to interpolate between (default: "
                        "test examples)")


def run(args) -> int:
    from ..evaluate.figures import interpolation_strips
    from ..inference.contract import output_of
    from ..inference.program import conditional, require
    from ..plots import plot_interpolation

    run = load(args)
    require(run.model, "encode", "ppvae interpolate")
    require(run.model, "decode", "ppvae interpolate")
    if output_of(run.model).text:
        if run.model.representation in ("smiles", "selfies"):
            return _molecules(args, run)
        return _text(args, run)
    if args.between:
        raise ValueError("--between names two molecules or sentences; it applies to sequence models (sequence_vae on "
                         "moses, smiles-file, fortunes, bible or text data)")
    cond = conditional(run.model)
    available = run.data.test.shape[0] // 2
    if args.pairs > available and not cond:
        raise ValueError(f"--pairs {args.pairs} needs {2 * args.pairs} test examples; this run's test set has "
                         f"{run.data.test.shape[0]}, so at most --pairs {available}")
    batch = test_batch(run, None if cond else 2 * args.pairs)  # a conditional model pairs examples of one class
    strips = interpolation_strips(run.model, batch, args.pairs, steps=args.steps, method=args.method)
    if strips is None:
        raise ValueError("no class has two test examples to interpolate between")
    flat = (strips - strips[:, :1]).abs().amax(dim=tuple(range(1, strips.ndim))) < 1e-3
    if bool(flat.all()):
        warnings.warn(f"every step of the {strips.shape[0]} path(s) decodes to the same image: the decoder ignores the "
                      f"code along them (posterior collapse? see the KL per site in metrics.csv)", stacklevel=2)
    path = out_path(args, f"interpolation_{args.method}.png")
    within = " within a class (the label held fixed)" if cond else ""
    plot_interpolation(strips.cpu(), path=path, title=f"{args.method.capitalize()} interpolation{within}")
    print(f"wrote {path}")
    return 0


def _molecules(args, run) -> int:
    from ..apps.molecules import canonical, draw_molecules, interpolate_molecules
    from ..evaluate.latent import check_path

    ends = args.between or run.model.strings(run.data.test[:2])
    steps = interpolate_molecules(run.model, ends[0], ends[1], steps=args.steps, method=args.method)
    check_path([s["smiles"] for s in steps], tuple(ends), "molecule",
               same=lambda a, b: canonical(a) is not None and canonical(a) == canonical(b))
    for s in steps:
        print(f"{s['step']:>3}  {'valid  ' if s['valid'] else 'invalid'}  {s['smiles']}")
    print(f"{sum(s['valid'] for s in steps)} of {len(steps)} steps are valid molecules")
    path = out_path(args, f"interpolation_{args.method}.png")
    draw_molecules([s["smiles"] for s in steps], path, per_row=min(len(steps), 5),
                   legends=[f"step {s['step']}" for s in steps])
    print(f"wrote {path}")
    return 0


def _text(args, run) -> int:
    from ..apps.text import homotopy
    from ..evaluate.latent import check_path

    if args.between:
        pairs = [tuple(args.between)]
    else:
        test = run.data.test
        if test.shape[0] < 2:
            raise ValueError("the test set has fewer than two sentences to interpolate between")
        k = min(args.pairs, test.shape[0] // 2)
        pairs = [(test[2 * i], test[2 * i + 1]) for i in range(k)]
    lines = []
    for a, b in pairs:
        path = homotopy(run.model, a, b, steps=args.steps, method=args.method)
        ends = [s if isinstance(s, str) else run.model.strings(s.unsqueeze(0))[0] for s in (a, b)]
        check_path(path, tuple(ends), "sentence")
        lines += [f"from: {ends[0]}", *(f"{i:>4}  {s}" for i, s in enumerate(path)), f"  to: {ends[1]}", ""]
    print("\n".join(lines).rstrip())
    out = out_path(args, f"interpolation_{args.method}.txt")
    write_lines(out, lines)
    print(f"wrote {out}")
    return 0
