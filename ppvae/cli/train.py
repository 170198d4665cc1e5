"""``ppvae train``."""

from __future__ import annotations

import time
from pathlib import Path

HELP = "train a model from a TOML spec (defaults: a VAE on 5,000 real MNIST digits, offline)"
FLAGS = ("spec",)


def add_arguments(p) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set prior.name=normal --set beta.value=4 (repeatable)")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<time>-<data>-<prior>-<likelihood>)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("--deterministic", action="store_true",
                   help="use only torch's deterministic algorithms (for GPUs; CPU training is deterministic "
                        "already); recorded as train.deterministic = true")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes (torchrun with DistributedDataParallel; train.batch_size is per "
                        "process); at most the machine's CPU cores, or its GPUs on CUDA")


def run(args) -> int:
    from ..inference.run import default_run_dir, resume, spec_world, train_spec
    from ..inference.writer import held_out_split
    from ..spec import load_spec

    if args.nproc is not None and args.nproc != 1:
        return _launch(args)
    if args.deterministic:
        args.overrides = [*args.overrides, "train.deterministic=true"]
    start, before = time.perf_counter(), 0
    if args.resume:
        if args.spec:
            raise ValueError("give either a spec or --resume RUN, not both (use --set to change the resumed spec)")
        if args.run_dir:
            raise ValueError("--resume RUN continues in RUN; it cannot be combined with --run-dir")
        args.started_run = Path(args.resume)
        run = resume(args.resume, args.overrides, progress=not args.quiet)
        before = run.resumed_from
        if len(run.metrics) == before:
            print(f"nothing to train: {args.resume} has finished its {before} epochs; raise train.epochs "
                  f"(--set train.epochs={before + 10}) to train on")
            return 0
    else:
        spec = load_spec(args.spec, args.overrides)
        args.started_run = run_dir = spec_world(spec).broadcast(Path(args.run_dir) if args.run_dir else
                                                                default_run_dir(spec))  # one name for all ranks
        if args.quiet and spec_world(spec).is_main:  # the progress display names it otherwise
            print(f"run directory: {args.started_run}", flush=True)
        run = train_spec(spec, run_dir=run_dir, progress=not args.quiet)
    if not spec_world(run.spec).is_main:
        return 0
    last = run.metrics[-1] if run.metrics else {}
    print(f"trained {len(run.metrics) - before} epochs (to epoch {len(run.metrics)}) in "
          f"{time.perf_counter() - start:.1f}s; "
          f"{held_out_split(last)} ELBO {last.get(f'{held_out_split(last)}_elbo', float('nan')):.2f} nats/example")
    print(f"run directory: {run.run_dir}  (spec.toml, checkpoint.pt, metrics.csv, figures/)")
    return 0


def _launch(args) -> int:
    """``ppvae train --nproc N ...``: the same command under torchrun, on N processes of this machine."""
    from ..inference.distributed import check_backend, check_nproc, launch, torchrun_env
    from ..inference.lock import RunLock
    from ..inference.run import default_run_dir, run_spec
    from ..inference.train import check_fresh, resolve_device
    from ..spec import load_spec

    if torchrun_env() is not None:
        raise ValueError("--nproc starts torchrun itself; under torchrun, leave --nproc out (torchrun's "
                         "--nproc_per_node says how many processes)")
    spec = run_spec(args.resume, args.overrides) if args.resume else load_spec(args.spec, args.overrides)
    device = resolve_device(spec["device"])
    check_backend(spec["train"].get("backend", "auto"), device)
    check_nproc(args.nproc, device)
    argv = _without_option(args.argv, "--nproc")
    if not args.resume and not args.run_dir:  # named here, so that every process writes to the same place
        argv += ["--run-dir", str(default_run_dir(spec))]
    target = args.resume or args.run_dir
    if target:  # refused here in one line, before torchrun starts processes that would each say it
        if not args.resume:
            check_fresh(Path(target))
        if Path(target).is_dir():
            RunLock(target).acquire().release()
    return launch(args.nproc, argv)


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out
