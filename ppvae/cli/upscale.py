"""``ppvae upscale``."""

from __future__ import annotations

from .common import at_least, load, out_path

HELP = "super-resolution: condition on the average-pooled test images"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("--factor", type=int, choices=[2, 4], default=2, help="pooling factor (default: 2)")
    p.add_argument("-k", "--num-samples", type=at_least(1), default=100, help="importance samples (default: 100)")
    p.add_argument("-n", type=at_least(1), default=8, help="examples in the figure (default: 8)")
    p.add_argument("--max-examples", type=at_least(1), default=500, help="test examples scored (default: 500)")


def run(args) -> int:
    import torch

    from ..apps.inpaint import upscale_report
    from ..plots import plot_interpolation

    run = load(args)
    x = run.data.test[: args.max_examples].to(next(run.model.parameters()).device)
    report, images = upscale_report(run.model, x, args.factor, num_samples=args.num_samples, seed=args.seed)
    side = x.shape[-1] // args.factor
    print(f"x{args.factor} super-resolution of {len(x)} test examples from {side}x{side}, per example")
    print(f"{'way':<10} {'log-lik of the truth (nats)':>28} {'squared error':>14}")
    for way, r in report.items():
        note = "   (its pixels read as Bernoulli means)" if way == "bilinear" else ""
        print(f"{way:<10} {r['log_likelihood']:28.2f} {r['squared_error']:14.2f}{note}")
    path = out_path(args, f"upscale_x{args.factor}.png")
    strips = torch.stack([images["low"][: args.n], images["bilinear"][: args.n], images["model"][: args.n],
                          x[: args.n]], 1)
    plot_interpolation(strips.cpu(), path=path, title=f"x{args.factor} super-resolution from {side}x{side}",
                       columns=[f"low-res ({side}x{side})", "bilinear", "model", "truth"], xlabel=None)
    print(f"wrote {path}")
    return 0
