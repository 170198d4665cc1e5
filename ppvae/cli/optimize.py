"""``ppvae optimize``."""

from __future__ import annotations

from .common import at_least

HELP = ("property optimisation in a molecule VAE's latent space (gradient ascent on a property predictor), "
        "reporting true RDKit values")
FLAGS = ("run", "checkpoint", "device", "seed", "figures")


def add_arguments(p) -> None:
    p.add_argument("--property", default="qed", choices=["qed", "logp", "mw"], help="the property to "
                                                                                    "raise (default: qed)")
    p.add_argument("--steps", type=at_least(1), default=100, help="gradient steps from each start (default: 100)")
    p.add_argument("--starts", type=at_least(1), default=5, help="test molecules to start from (default: 5)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam step size on z (default: 0.05)")


def run(args) -> int:
    from ..apps.molecules import optimize_report

    r, wrote = optimize_report(args.run, args.property, steps=args.steps, lr=args.lr, starts=args.starts,
                               seed=args.seed, device=args.device, figures=not args.no_figures,
                               checkpoint=args.checkpoint)
    print(f"{args.property}: predictor R^2 {r['predictor_r2']:.3f} on training codes; {r['steps']} steps from "
          f"{r['starts']} test molecules; improved {r['improved']} of {r['starts']}")
    for i, x in enumerate(r["runs"]):
        best = x["best"]
        tail = f"best {best['smiles']} ({best['value']:.3f}, step {best['step']})" if best else "no valid decoding"
        print(f"  {i}: start {x['start']} ({x['start_value']:.3f}) -> {tail}")
    print("wrote " + ", ".join(map(str, wrote)))
    return 0
