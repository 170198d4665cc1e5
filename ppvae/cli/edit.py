"""``ppvae edit``."""

from __future__ import annotations

from .common import at_least, load, out_path

HELP = "move test codes along an attribute vector (mean code of B minus mean code of A)"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("--from-label", type=int, required=True, help="the group A the edited examples come from")
    p.add_argument("--to-label", type=int, required=True, help="the group B they move towards")
    p.add_argument("--strengths", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2],
                   help="multiples of the vector (default: 0 0.5 1 1.5 2)")
    p.add_argument("-n", type=at_least(1), default=8, help="test examples of A to edit (default: 8)")
    p.add_argument("--attribute", type=int, help="with factor labels (N, K): use column K as the binary attribute")


def run(args) -> int:
    from ..apps.edit import attribute_labels, attribute_vector, edit, judge_edits
    from ..plots import plot_interpolation

    run = load(args)
    data = run.data
    device = next(run.model.parameters()).device
    name = run.spec["data"]["name"]
    y_train, y_test = (attribute_labels(y, args.attribute, name) for y in (data.train_labels, data.test_labels))
    vector = attribute_vector(run.model, data.train.to(device), y_train.to(device), args.from_label, args.to_label)
    rows = (y_test == args.from_label).nonzero().squeeze(1)[: args.n]
    if len(rows) == 0:
        raise ValueError(f"--from-label {args.from_label}: no test example has that label")
    strips = edit(run.model, data.test[rows].to(device), vector, args.strengths).cpu()
    path = out_path(args, f"edit_{args.from_label}_to_{args.to_label}.png")
    title = f"Edit along mean code({args.to_label}) - mean code({args.from_label})"
    plot_interpolation(strips, path=path, title=title, columns=[f"{s:g}" for s in args.strengths],
                       xlabel="strength (multiples of the vector)")
    print(f"wrote {path}")
    probs = judge_edits(data.train, y_train, strips, args.to_label, seed=args.seed)
    print(f"P(label {args.to_label}) by a classifier trained on the real data, mean over {len(rows)} edits:")
    for s, p in zip(args.strengths, probs):
        print(f"  strength {s:<5g} {p:.3f}")
    return 0
