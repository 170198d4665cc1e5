"""``ppvae molecules``."""

from __future__ import annotations

from pathlib import Path

from .common import at_least

HELP = ("validity, uniqueness, novelty, diversity, properties and reconstruction of "
        "a molecule VAE (RDKit)")
FLAGS = ("run", "checkpoint", "device", "seed", "figures", "quiet")


def add_arguments(p) -> None:
    p.add_argument("-n", type=at_least(1), default=10000, help="molecules to sample (default: 10000)")


def run(args) -> int:
    from ..apps.molecules import MOLECULES_FILE, molecules_report

    r = molecules_report(args.run, args.n, seed=args.seed, device=args.device, figures=not args.no_figures,
                         progress=not args.quiet, checkpoint=args.checkpoint)
    print(f"{r['samples']} samples ({r['representation']}), seed {r['seed']}")
    unique = [k for k in r if k.startswith("unique@")]  # named by the valid molecules they were computed from
    for k in ("validity", *unique, "novelty", "internal_diversity", "reconstruction_accuracy"):
        print(f"{k:<24} {r[k]:.3f}")
    for k, v in r["property_wasserstein"].items():
        m = r["property_means"][k]
        print(f"{k + ' W1 to test':<24} {v:.3f}  (mean {m['samples']:.2f} samples, {m['test']:.2f} test)")
    run = Path(args.run)
    print(f"wrote {run / MOLECULES_FILE}, {run / 'samples.smi'}" + ("" if args.no_figures else
          f", {run / 'figures' / 'molecules.png'}, {run / 'figures' / 'properties.png'}"))
    return 0
