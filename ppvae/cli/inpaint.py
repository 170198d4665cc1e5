"""``ppvae inpaint``."""

from __future__ import annotations

from .common import at_least, load, out_path

HELP = "fill hidden pixels of test images by conditioning on the observed ones"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("--mask", default="center", help="center, left, top, quadrant or random:P (default: center)")
    p.add_argument("--method", choices=["importance", "gibbs"], default="importance",
                   help="importance resampling with the guide, or pseudo-Gibbs (default: importance)")
    p.add_argument("-k", "--num-samples", type=at_least(1), default=100, help="importance samples (default: 100)")
    p.add_argument("--steps", type=at_least(2), default=50, help="pseudo-Gibbs steps (default: 50)")
    p.add_argument("-n", type=at_least(1), default=8, help="examples in the figure (default: 8)")
    p.add_argument("--max-examples", type=at_least(1), default=500, help="test examples scored (default: 500)")


def run(args) -> int:
    from ..apps.inpaint import inpaint_report, make_mask
    from ..plots import plot_inpainting

    run = load(args)
    device = next(run.model.parameters()).device
    x = run.data.test[: args.max_examples].to(device)
    mask = make_mask(args.mask, x.shape[1:], seed=args.seed).to(device)
    report, filled = inpaint_report(run.model, run.data.train.to(device), x, mask, method=args.method,
                                    num_samples=args.num_samples, steps=args.steps, seed=args.seed)
    name = args.mask.replace(":", "")
    path = out_path(args, f"inpaint_{name}_{args.method}.png")
    plot_inpainting(x[: args.n].cpu(), mask.cpu(), filled[: args.n].cpu(), path=path,
                    title=f"{args.mask}, {args.method}")
    print(f"mask {args.mask}: {int((~mask).sum())} of {mask.numel()} pixels hidden; {len(x)} test "
          f"examples, per example")
    print(f"{'way':<14} {'held-out log-lik (nats)':>24} {'squared error':>14}")
    for way, r in report.items():
        ll = r.get("held_out_log_likelihood")
        print(f"{way:<14} {'-' if ll is None else f'{ll:.2f}':>24} {r['squared_error']:14.2f}")
    print(f"wrote {path}")
    return 0
