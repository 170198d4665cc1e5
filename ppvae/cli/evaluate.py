"""``ppvae evaluate``."""

from __future__ import annotations

from pathlib import Path

from .common import at_least

HELP = "test ELBO, IWAE log-likelihood, collapse and guide diagnostics, figures"
FLAGS = ("run", "checkpoint", "device", "seed", "figures", "quiet")


def add_arguments(p) -> None:
    p.add_argument("-k", "--num-samples", type=at_least(1), default=1000,
                   help="importance samples per example for the IWAE estimate and PSIS (default: 1000)")
    p.add_argument("--max-examples", type=at_least(2), help="evaluate only the first N test examples (N >= 2)")
    p.add_argument("--tsne", action="store_true", help="also draw a t-SNE of the latent codes (slower)")
    p.add_argument("--sample-quality", action="store_true",
                   help="also the Frechet distance (in a classifier trained once per dataset) and sharpness of prior "
                        "samples, reconstructions and gmm samples (labelled image data)")


def run(args) -> int:
    import torch

    from ..evaluate.report import REPORT_FILE, evaluate_run, summary

    torch.manual_seed(args.seed)
    report = evaluate_run(args.run, num_samples=args.num_samples, max_examples=args.max_examples, seed=args.seed,
                          device=args.device, figures=not args.no_figures, tsne=args.tsne,
                          quality=args.sample_quality, checkpoint=args.checkpoint, progress=not args.quiet)
    c = report["checkpoint"]
    print(f"read {Path(args.run) / c['file']} (epoch {c['epoch']} of {c['trained_epochs']}"
          f"{', still training' if c['still_training'] else ''})")
    print(summary(report))
    out = Path(report["written_to"])
    print(f"wrote {out / REPORT_FILE}, {out / 'posterior.nc'}"
          + (f" and {len(report['figures'])} figures in {out / 'figures'}" if "figures" in report else "")
          + f" in {report['seconds']:.0f}s")
    return 0
