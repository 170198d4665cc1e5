"""Progress bars of the long computations (evaluation, the metrics, sweeps): tqdm's, on stderr, each saying what it
computes and updated once per chunk of work, never per example. ``progress=False`` (the command line's ``--quiet``)
draws none. A bar inside another's stage is cleared when it ends; the outermost one stays, with its time."""

from __future__ import annotations

import threading

from tqdm.auto import tqdm

#: how often a stage's bar redraws its elapsed time while one long step runs
TICK_SECONDS = 2.0


def bar(total: int | None, desc: str, progress: bool = True, unit: str = "example") -> tqdm:
    """A bar of ``total`` units saying ``desc``; the caller updates it by the size of each chunk it finishes."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True, leave=None)


def write(say, message: str) -> None:
    """``say(message)``, a line of a command's output, printed between the bars drawn at the time, not over them."""
    with tqdm.external_write_mode():
        say(message)


class Stages:
    """One bar over the named stages of a computation whose steps differ in kind: ``stage(name)`` ends the stage
    before and shows ``name``; ``close()`` (or the end of a ``with`` block) ends the last. A stage left out
    (a metric not asked for) is not counted: the bar ends full. ``progress`` says whether it draws; the bars of
    a stage's own work follow it."""

    def __init__(self, desc: str, total: int, progress: bool = True):
        self.bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True, leave=None,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")  # stages: no rate
        self.progress, self.started = progress, False
        # A stage that is one long call (boosted trees, a chunk of importance samples) still shows its time moving.
        self._ended = threading.Event()
        if progress:
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._ended.wait(TICK_SECONDS):
            self.bar.refresh()

    def __call__(self, name: str) -> None:
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_postfix_str(name)

    def close(self) -> None:
        self._ended.set()
        self.bar.set_postfix_str("", refresh=False)
        self.bar.update(max(0, self.bar.total - self.bar.n))
        self.bar.close()

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        else:  # the error is what the user reads: the bar goes without claiming the stages done
            self._ended.set()
            self.bar.close()
