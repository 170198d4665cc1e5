"""Sweeps: train every combination of a grid of spec values, over seeds, as ordinary run directories, then
summarise reconstruction, KL and the disentanglement metrics against the swept values.

    ppvae sweep SPEC --grid beta.value=1,2,4,8,16 --seeds 3 --jobs 2

Each combination and seed is a run directory ``OUT/<key=value>...-seed<S>`` that every other verb reads. The
grid is checked before anything trains (a key no component takes, a value of the wrong type). A sweep resumes:
a finished run is skipped, an interrupted one continues from its checkpoint, and metrics already written with
the same settings are kept. Runs go to ``jobs`` worker processes (at most one per CPU core), each with an equal
share of the cores' threads.
"""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import json
import math
import os
from multiprocessing import get_context
from pathlib import Path

from ..progress import TICK_SECONDS, bar, write
from ..registry import check_options, registry_for
from ..spec import COMPONENT_SECTIONS, load_spec, parse_override

SUMMARY_FILE = "summary.csv"
SWEEP_FIGURE = "sweep.png"
RUN_COLUMNS = ("val_elbo", "val_recon", "val_kl", "val_mi", "val_tc", "val_dim_kl")
METRIC_COLUMNS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
                  "sap")
#: dataset options every loader takes (``load_dataset`` applies them), beyond the loader's own keywords
_DATA_OPTIONS = ("limit_train", "limit_test", "labels_per_class", "labeled", "label_seed", "keep_unlabeled",
                 "train_classes", "test_fraction", "split_seed")


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["beta.value=1,2,4"]`` -> ``{"beta.value": [1, 2, 4]}``; each value is read as a spec override's is."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid {item!r} must look like section.key=v1,v2,..., e.g. beta.value=1,2,4")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key in grid:
            raise ValueError(f"--grid key {key!r} is given twice; list all its values in one --grid")
        if key == "seed":
            raise ValueError("--grid seed=...: seeds are swept with --seeds N (seeds spec seed, seed + 1, ...)")
        values = [parse_override(f"{key}={v.strip()}")[1] for v in raw.split(",") if v.strip()]
        if not values:
            raise ValueError(f"--grid {item!r} has no values; give them comma-separated, e.g. {key}=1,2,4")
        grid[key] = values
    if not grid:
        raise ValueError("a sweep needs at least one --grid section.key=v1,v2,...")
    return grid


def combinations(grid: dict[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def _overrides(combo: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, str) else _toml(v)}" for k, v in combo.items()]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def check_grid(source, overrides: list[str], grid: dict[str, list]) -> None:
    """Refuse, in one line, a grid key that no component of the spec takes or a value of the wrong type, for
    every combination, before anything trains."""
    for combo in combinations(grid):
        try:
            spec = load_spec(source, [*overrides, *_overrides(combo)])
        except ValueError as e:
            raise ValueError(f"sweep grid {_describe(combo)}: {e}") from None
        for key, value in combo.items():
            path = key.split(".")
            if path[0] not in COMPONENT_SECTIONS or len(path) != 2 or path[1] == "name":
                continue
            section, option = path
            cls = registry_for(section).get(spec[section]["name"])
            who = f"sweep grid key {key!r}: {registry_for(section).kind} {spec[section]['name']!r}"
            if section == "data" and option in _DATA_OPTIONS:
                continue
            check_options(cls, {option: value}, who, keyword_only=section != "model")
            _check_type(cls, option, value, key)
        if any(k.startswith(("beta.", "objective.")) for k in combo):
            from ..inference.objectives import kl_weighting
            try:
                kl_weighting(spec)  # beta and the objective, checked together (a KL rule is named once)
            except ValueError as e:
                raise ValueError(f"sweep grid {_describe(combo)}: {e}") from None


def _check_type(cls, option: str, value, key: str) -> None:
    try:
        param = inspect.signature(cls).parameters.get(option)
    except (TypeError, ValueError):
        return
    if param is None or param.default is inspect.Parameter.empty or param.default is None:
        return
    default = param.default
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ValueError(f"sweep grid key {key!r}: the value {value!r} is not {kind} (the "
                         f"option's default is {default!r})")


def _describe(combo: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in combo.items())


def run_name(combo: dict, seed: int) -> str:
    parts = [f"{k}={v}" for k, v in combo.items()]
    safe = "-".join(parts).replace("/", "_").replace(" ", "")
    return f"{safe}-seed{seed}"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cap_jobs(jobs: int, say=print) -> int:
    """``jobs`` worker processes, at most one per CPU core (said, where capped)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    cores = available_cores()
    if jobs > cores:
        say(f"--jobs {jobs} is more than the {cores} CPU core(s) here; running {cores} at a time")
        return cores
    return jobs


def _finished(run_dir: Path) -> bool:
    """Whether a run directory holds a checkpoint of all its spec's epochs."""
    from ..inference.checkpoint import CHECKPOINT
    from ..inference.writer import METRICS_FILE, SPEC_FILE

    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / METRICS_FILE).is_file():
        return False
    epochs = load_spec(run_dir / SPEC_FILE)["train"]["epochs"]
    with open(run_dir / METRICS_FILE) as f:
        return sum(1 for _ in csv.DictReader(f)) >= epochs


def _leave_interrupts_to_the_sweep() -> None:
    """In a worker: Ctrl-C reaches the whole process group, and the sweep itself stops the workers (terminate), so
    a worker does not print its own traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _job(source, overrides: list[str], run_dir: str, threads: int, metric_options: dict | None,
         progress: bool = False) -> dict:
    """One run of the sweep (in a worker process): train, resume or skip it, then its metrics; ``progress``: the
    training's bar and the metrics' (one run at a time only: several would draw over each other)."""
    import torch

    from ..evaluate.disentanglement import DISENTANGLEMENT_FILE, disentanglement_report
    from ..inference.checkpoint import CHECKPOINT
    from ..inference.run import resume, train_spec

    torch.set_num_threads(threads)
    path = Path(run_dir)
    if _finished(path):
        status = "skipped (finished)"
    elif (path / CHECKPOINT).is_file():
        resume(path, progress=progress)
        status = "resumed"
    else:
        train_spec(source, overrides, run_dir=path, progress=progress)
        status = "trained"
    if metric_options is not None:
        cached = path / DISENTANGLEMENT_FILE
        settings = {k: v for k, v in metric_options.items() if k not in ("metrics", "figures", "device")}
        old = json.loads(cached.read_text()) if cached.is_file() else None
        if old is None or any(old["settings"].get(k) != v for k, v in settings.items()) \
                or status != "skipped (finished)":
            disentanglement_report(path, progress=progress, **metric_options)
            status += ", metrics computed"
        else:
            status += ", metrics kept"
    return {"run": str(path), "status": status}


def sweep(source, grid: dict[str, list], *, seeds: int = 1, jobs: int = 1, out: str | Path | None = None,
          overrides: list[str] = (), metric_options: dict | None = None, figures: bool = True,
          say=print, progress: bool = True) -> list[dict]:
    """Train (or skip, or resume) every grid combination for ``seeds`` seeds into ``out``; returns the summary
    rows and writes ``OUT/summary.csv`` and ``OUT/figures/sweep.png``. ``metric_options`` (the keyword
    arguments of :func:`~ppvae.evaluate.disentanglement.disentanglement_report`) adds the disentanglement
    metrics where the data has factors; None leaves them out. ``progress``: a bar over the runs naming the one
    training, and, one run at a time, the training's and the metrics' bars inside it (``--quiet``: none)."""
    from ..evaluate.disentanglement import factor_source
    from ..inference.run import load_data

    overrides = list(overrides)
    seeds = _positive(seeds, "--seeds")
    check_grid(source, overrides, grid)
    base = load_spec(source, overrides)
    out = sweep_dir(source, out)
    if metric_options is not None:
        try:
            factor_source(load_data(base))
        except ValueError as e:
            say(f"no disentanglement metrics: {e}")
            metric_options = None
    jobs = cap_jobs(jobs, say)
    threads = max(1, available_cores() // jobs)
    tasks = []
    for combo in combinations(grid):
        for s in range(seeds):
            seed = base["seed"] + s
            run_dir = out / run_name(combo, seed)
            tasks.append((combo, seed, run_dir, [*overrides, *_overrides(combo), f"seed={seed}"]))
    out.mkdir(parents=True, exist_ok=True)
    say(f"sweep: {len(tasks)} runs ({len(combinations(grid))} combinations x {seeds} seed(s)) into {out}, "
        f"{jobs} at a time")
    spec_source = str(source) if source is not None and not isinstance(source, dict) else source
    args = [(spec_source, o, str(d), threads, metric_options, progress and jobs == 1) for _, _, d, o in tasks]
    with bar(len(tasks), "sweep", progress, unit="run") as shown:
        if jobs == 1:
            results = []
            for a in args:
                shown.set_postfix_str(f"training {Path(a[2]).name}")
                results.append(_job(*a))
                shown.update()
                write(say, f"  {Path(results[-1]['run']).name}: {results[-1]['status']}")
        else:
            pool = get_context("spawn").Pool(jobs, initializer=_leave_interrupts_to_the_sweep)
            try:
                pending = [pool.apply_async(_job, a) for a in args]
                results = []
                for a, result in zip(args, pending):
                    shown.set_postfix_str(f"training {Path(a[2]).name} ({jobs} at a time)")
                    while not result.ready():  # the bar's time moves while the runs train
                        result.wait(TICK_SECONDS)
                        shown.refresh()
                    results.append(result.get())
                    shown.update()
                    write(say, f"  {Path(results[-1]['run']).name}: {results[-1]['status']}")
                pool.close()
            except BaseException:  # Ctrl-C, or a run that failed: the runs still training stop too
                pool.terminate()
                raise
            finally:
                pool.join()
        shown.set_postfix_str("", refresh=False)  # the bar that stays says how long the sweep took, not a run
    rows = [summary_row(combo, seed, run_dir) for combo, seed, run_dir, _ in tasks]
    write_summary(rows, list(grid), out / SUMMARY_FILE)
    if figures:
        from ..plots import plot_sweep
        keys = list(grid)
        plot_sweep(rows, keys[0], ["val_recon", "val_kl", "val_tc", *METRIC_COLUMNS],
                   path=out / "figures" / SWEEP_FIGURE, group=keys[1] if len(keys) > 1 else None)
    return rows


def sweep_dir(source, out=None) -> Path:
    """Where a sweep writes: ``out``, else ``sweeps/<the spec file's name>`` (``sweeps/default`` without a file)."""
    if out is not None:
        return Path(out)
    return Path("sweeps") / (Path(str(source)).stem if isinstance(source, (str, os.PathLike)) else "default")


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def summary_row(combo: dict, seed: int, run_dir: Path) -> dict:
    """A run's last epoch (validation ELBO terms) and headline metrics, keyed by the swept values and the seed."""
    from ..evaluate.disentanglement import DISENTANGLEMENT_FILE
    from ..inference.writer import METRICS_FILE

    with open(run_dir / METRICS_FILE) as f:
        last = list(csv.DictReader(f))[-1]
    row = {"run": run_dir.name, **combo, "seed": seed, "epochs": int(last["epoch"])}
    for k in RUN_COLUMNS:
        row[k] = float(last[k]) if last.get(k) not in (None, "") else None
    scores = run_dir / DISENTANGLEMENT_FILE
    summary = json.loads(scores.read_text())["summary"] if scores.is_file() else {}
    for k in METRIC_COLUMNS:
        row[k] = summary.get(k)
    return row


def write_summary(rows: list[dict], keys: list[str], path: Path) -> None:
    from ..inference.checkpoint import atomic_write_bytes

    columns = ["run", *keys, "seed", "epochs", *RUN_COLUMNS, *METRIC_COLUMNS]
    columns = [c for c in columns if c in keys or c in ("run", "seed", "epochs") or any(r.get(c) is not None
                                                                                       for r in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def format_summary(rows: list[dict], keys: list[str]) -> str:
    """The summary as a fixed-width table: one line per run."""
    columns = [c for c in (*keys, "seed", *RUN_COLUMNS, *METRIC_COLUMNS)
               if c in keys or c == "seed" or any(r.get(c) is not None for r in rows)]
    width = {c: max(len(c), 8) for c in columns}
    lines = ["  ".join(f"{c:>{width[c]}}" for c in columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = "" if v is None else f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else str(v)
            cells.append(f"{text:>{width[c]}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
