"""Progress lines for long runs, printed to stderr and throttled."""
from __future__ import annotations

import sys
import time

import click


def progress_printer(label: str, stream=None, every: float = 2.0):
    """A :class:`~maxrf_bench.Progress` callback printing ``[label] done/total pct message
    (elapsed, remaining)`` to ``stream`` (stderr) at most every ``every`` seconds."""
    stream = stream or sys.stderr
    state = {"t0": time.perf_counter(), "last": 0.0}

    def progress(done: int, total: int, message: str = "") -> None:
        now = time.perf_counter()
        if now - state["last"] < every and done < total:
            return
        state["last"] = now
        elapsed = now - state["t0"]
        remaining = ""
        if 0 < done < total:
            remaining = f", ~{elapsed * (total - done) / done:.0f} s left"
        pct = f" {100 * done / total:3.0f}%" if total else ""
        click.echo(f"  [{label}] {done}/{total}{pct} {message} ({elapsed:.0f} s{remaining})".rstrip(),
                   file=stream)

    return progress
