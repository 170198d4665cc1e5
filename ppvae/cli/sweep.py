"""``ppvae sweep``."""

from __future__ import annotations

from .common import at_least, metric_sizes

HELP = ("train every combination of a grid of spec values over seeds, then tabulate and "
        "plot reconstruction, KL and the disentanglement metrics against them")
FLAGS = ("spec", "metric_sizes", "figures", "quiet")


def add_arguments(p) -> None:
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a spec key and its values, e.g. --grid beta.value=1,2,4,8,16 (repeatable: all combinations)")
    p.add_argument("--seeds", type=at_least(1), default=1, help="seeds per combination: seed, seed+1, ... (default: 1)")
    p.add_argument("--jobs", type=at_least(1), default=1, help="runs trained at once, at most "
                                                                "one per CPU core (default: 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field for every run, e.g. --set train.epochs=10")
    p.add_argument("--out", help="sweep directory (default: sweeps/<spec name>)")
    p.add_argument("--no-metrics", action="store_true", help="leave out the disentanglement metrics")


def run(args) -> int:
    from ..apps.sweep import SUMMARY_FILE, SWEEP_FIGURE, format_summary, parse_grid, sweep, sweep_dir

    grid = parse_grid(args.grid)
    metrics = None if args.no_metrics else {"figures": not args.no_figures, **metric_sizes(args)}
    rows = sweep(args.spec, grid, seeds=args.seeds, jobs=args.jobs, out=args.out, overrides=args.overrides,
                 metric_options=metrics, figures=not args.no_figures, progress=not args.quiet)
    print(format_summary(rows, list(grid)))
    where = sweep_dir(args.spec, args.out)
    print(f"wrote {where / SUMMARY_FILE}" + ("" if args.no_figures else f", {where / 'figures' / SWEEP_FIGURE}"))
    return 0
