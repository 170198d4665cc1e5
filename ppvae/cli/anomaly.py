"""``ppvae anomaly``."""

from __future__ import annotations

from pathlib import Path

from .common import at_least

HELP = "anomaly / out-of-distribution scores of a run: AUROC, AP, FPR at 95%% TPR"
FLAGS = ("run", "checkpoint", "device", "seed", "figures", "quiet")


def add_arguments(p) -> None:
    p.add_argument("--normal", choices=["test"], default="test", help="the normal data: the run's test split")
    p.add_argument("--anomalous", help="a dataset name (its test split) or a .npy/.npz file (all its examples)")
    p.add_argument("--normal-class", type=int, help="one-class mode: the run's test examples of this class are normal, "
                                                    "the others anomalous (train with --set data.train_classes=[K])")
    p.add_argument("--score", dest="scores", action="append", metavar="SCORE",
                   help="reconstruction, neg_elbo, neg_iwae, complexity, complexity_zlib (repeatable; default: all "
                        "but complexity_zlib)")
    p.add_argument("-k", "--num-samples", type=at_least(1), default=100, help="importance samples for neg_iwae and "
                                                                                "complexity (default: 100)")
    p.add_argument("--max-examples", type=at_least(1), help="at most N examples of each set")


def run(args) -> int:
    from ..apps.anomaly import ANOMALY_FILE, SCORES_FILE, evaluate_anomalies

    report = evaluate_anomalies(args.run, anomalous=args.anomalous, normal_class=args.normal_class,
                                scores=args.scores, num_samples=args.num_samples, max_examples=args.max_examples,
                                seed=args.seed, device=args.device, figures=not args.no_figures,
                                progress=not args.quiet, checkpoint=args.checkpoint)
    print(f"normal: {report['normal']['data']} ({report['normal']['examples']}); anomalous: "
          f"{report['anomalous']['data']} ({report['anomalous']['examples']}); higher score = more anomalous")
    print(f"{'score':<16} {'AUROC':>7} {'AP':>7} {'FPR@95%TPR':>11}")
    for name, m in report["scores"].items():
        print(f"{name:<16} {m['auroc']:7.3f} {m['average_precision']:7.3f} {m['fpr_at_95_tpr']:11.3f}")
    run = Path(args.run)
    print(f"wrote {run / ANOMALY_FILE}, {run / SCORES_FILE}"
          + ("" if args.no_figures else f", {run / 'figures' / 'anomaly_roc.png'}, anomaly_histograms.png"))
    return 0
