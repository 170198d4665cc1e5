"""``ppvae disentanglement``."""

from __future__ import annotations

from pathlib import Path

from .common import metric_sizes

HELP = ("BetaVAE, FactorVAE, MIG, DCI and SAP scores of a run's code against "
        "its data's ground-truth factors (dsprites)")
FLAGS = ("run", "checkpoint", "device", "seed", "metric_sizes", "figures", "quiet")


def add_arguments(p) -> None:
    p.add_argument("--metric", dest="metrics", action="append", metavar="NAME",
                   help="beta_vae, factor_vae, mig, dci, sap (repeatable; default: all)")


def run(args) -> int:
    from ..evaluate.disentanglement import DISENTANGLEMENT_FILE, METRICS, disentanglement_report

    scores = disentanglement_report(args.run, device=args.device, figures=not args.no_figures, seed=args.seed,
                                    metrics=tuple(args.metrics or METRICS), progress=not args.quiet,
                                    checkpoint=args.checkpoint,
                                    **metric_sizes(args))
    s = scores["settings"]
    print(f"factors: {', '.join(f'{n} ({k})' for n, k in zip(scores['factor_names'], scores['factor_sizes']))}; "
          f"seed {s['seed']}; {s['num_train']} / {s['num_eval']} codes (MIG, SAP), {s['dci_train']} / {s['dci_eval']} "
          f"(DCI), {s['num_votes']} / {s['num_votes_eval']} points of {s['batch_size']} (BetaVAE, FactorVAE)")
    for name, value in scores["summary"].items():
        print(f"{name:<22} {value:.3f}")
    if "dimension_factors" in scores:
        print("most informative factor per code dimension: " + ", ".join(
            f"z{i}={f} ({m:.2f})" for i, (f, m) in enumerate(zip(scores["dimension_factors"], scores["dimension_mi"]))))
    run = Path(args.run)
    print(f"wrote {run / DISENTANGLEMENT_FILE}" + ("" if args.no_figures or "dimension_factors" not in scores else
          f", {run / 'figures' / 'mutual_information.png'}, {run / 'figures' / 'factor_traversals.png'}"))
    return 0
