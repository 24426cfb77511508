"""Progress bars for long steps (training, baseline iterations, simulation, import, inference).

Built on ``tqdm`` (a maintained library, no dependencies of its own, also used by the
torch-free ``maxrf-infer`` runtime), so every bar shows the fraction done, the elapsed and
the remaining time::

    sim-flowers / proposed  42%|████▏     | 3360/8000 [01:13<01:41] adv 0.031 rec 0.004

A bar is drawn only on a terminal: when stderr is a file or a pipe (CI logs, ``nohup``)
nothing is drawn, and ``--quiet`` (or ``MAXRF_BENCH_QUIET=1``) silences every bar.
``MAXRF_BENCH_PROGRESS=1`` forces bars on a non-terminal (for debugging).

The interfaces the rest of the code uses:

* a method calls ``inputs.progress(done, total, message)`` (:class:`maxrf_bench.Progress`);
* the runner takes ``progress_factory(label) -> callback``; :func:`progress_bar` is such a
  factory (so is :func:`progress_printer`, its older name);
* code with a loop of its own calls a :func:`progress_bar` itself;
* status lines go through :func:`echo`, which prints above any live bar instead of
  through it.
"""
from __future__ import annotations

import os
import sys
import threading

QUIET_ENV = "MAXRF_BENCH_QUIET"
FORCE_ENV = "MAXRF_BENCH_PROGRESS"
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"

_state = {"quiet": False}
_active: "set[ProgressBar]" = set()
_lock = threading.Lock()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def set_quiet(quiet: bool = True) -> None:
    """Silence (or re-enable) every progress bar of this process (``maxrf-bench --quiet``)."""
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"] or _env_flag(QUIET_ENV)


def _enabled(stream, force: bool | None) -> bool:
    if is_quiet():
        return False
    if force is not None:
        return force
    if _env_flag(FORCE_ENV):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressBar:
    """A :class:`maxrf_bench.Progress` callback drawing one tqdm bar: ``bar(done, total, message)``.

    ``done`` and ``total`` are in the caller's units; ``total`` may change between calls (a
    method with phases), and ``done`` may go back (a new phase).  The bar closes itself when
    ``done >= total``; :meth:`close` closes it early.  Calls are cheap: tqdm redraws at most
    every ``every`` seconds.  A disabled bar (not a terminal, ``--quiet``) does nothing.
    """

    def __init__(self, label: str, *, stream=None, every: float = 0.2, force: bool | None = None,
                 unit: str = "it", leave: bool = True, delay: float = 0.5):
        self.label = label
        self.delay = delay  # a step shorter than this draws no bar at all
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _enabled(self.stream, force)
        self.every, self.unit, self.leave = every, unit, leave
        self._bar = None
        self._closed = False

    def _open(self, total: int):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=self.label, file=self.stream, mininterval=self.every,
                         unit=self.unit, bar_format=BAR_FORMAT, leave=self.leave, dynamic_ncols=True,
                         delay=self.delay, disable=False)
        with _lock:
            _active.add(self)

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled or self._closed:
            return
        total = max(int(total), 0)
        done = max(int(done), 0)
        if self._bar is None:
            self._open(total)
        bar = self._bar
        if total != bar.total:
            bar.total = total
        if message:
            bar.set_postfix_str(str(message)[:80], refresh=False)
        if done >= bar.n:
            bar.update(done - bar.n)  # tqdm throttles the redraw
        else:  # a new phase started from 0
            bar.n = done
            bar.refresh()
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None and not self._closed:
            self._bar.close()
            with _lock:
                _active.discard(self)
        self._closed = True


def progress_bar(label: str, stream=None, every: float = 0.2, force: bool | None = None,
                 unit: str = "it", delay: float = 0.5) -> ProgressBar:
    """A progress callback with a bar labelled ``label``; a ``progress_factory`` for the runner.

    Nothing is drawn for a step that ends within ``delay`` seconds."""
    return ProgressBar(label, stream=stream, every=every, force=force, unit=unit, delay=delay)


def progress_printer(label: str, stream=None, every: float = 0.2) -> ProgressBar:
    """The older name of :func:`progress_bar` (kept for plugins that use it)."""
    return ProgressBar(label, stream=stream, every=min(every, 1.0))


def echo(message: str, stream=None) -> None:
    """Print a status line to stderr above any live bar (a plain print would break the bar)."""
    stream = stream if stream is not None else sys.stderr
    with _lock:
        live = bool(_active)
    if live:
        from tqdm import tqdm

        tqdm.write(message, file=stream)
    else:
        print(message, file=stream, flush=True)
