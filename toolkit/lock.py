"""One run at a time per run directory: an exclusive lock on ``--out``.

Two ``maxrf-bench run`` commands (or :func:`maxrf_bench.run_grid` calls, in one process or
several) on the same run directory would interleave their writes of ``results.csv``,
``manifest.json`` and the same cells.  :func:`run_dir_lock` makes the second one **stop at
once** with :class:`RunDirLockedError` (CLI exit code 3) and a message naming the run that
holds the directory (process id, host, start time, command); nothing of the directory is
changed.  Use another ``--out``, or wait for the first run and start the second again: it
reuses every cell the first one finished.

The lock is an OS file lock (``flock``, through the maintained ``filelock`` package) on
``DIR/.maxrf-bench.lock``.  The kernel drops it when the process that holds it ends, however
it ends (SIGKILL, a crash, a power cut of a local disk), so a killed run never leaves a lock
that blocks the next one; the lock file itself stays (it is empty and harmless).  Beside it,
``DIR/.maxrf-bench.lock.json`` says who holds the lock, for the message; it is read only
while the lock is really held, so a stale copy left by a killed run is never believed.

``filelock`` rather than hand-written ``fcntl`` code: it is maintained, portable (Windows
``msvcrt`` locks too) and falls back to a marker file on file systems without ``flock``.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .errors import MaxrfError

LOCK_NAME = ".maxrf-bench.lock"
INFO_NAME = ".maxrf-bench.lock.json"

__all__ = ["INFO_NAME", "LOCK_NAME", "RunDirLockedError", "lock_holder", "run_dir_lock"]


class RunDirLockedError(MaxrfError):
    """Another run holds the run directory's lock (CLI exit code 3; nothing was written)."""

    exit_code = 3


def lock_holder(run_dir: str | os.PathLike) -> dict:
    """What ``DIR/.maxrf-bench.lock.json`` says of the run holding the lock (may be ``{}``)."""
    try:
        info = json.loads((Path(run_dir) / INFO_NAME).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    cmd = info.get("command")
    cmd = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd or "")
    parts = [f"pid {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("started"):
        parts.append(f"started {info['started']}")
    text = "another maxrf-bench run (" + ", ".join(parts) + ")"
    return text + (f": {cmd}" if cmd else "")


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike, command: Sequence[str] | None = None,
                 timeout: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if missing) for the block.

    ``timeout``: seconds to wait for another holder to finish (0: do not wait).  Raises
    :class:`RunDirLockedError` when the lock is still held after it.  Re-entrant within a
    thread (a nested call on the same directory does not deadlock).
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_NAME), is_singleton=True)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RunDirLockedError(
            f"run directory {str(run_dir)!r} is in use by {_describe(lock_holder(run_dir))}; "
            "this run stops without writing anything: wait for that run to finish and start "
            "this one again (it reuses every finished cell), or choose another --out") from None
    nested = lock.lock_counter > 1
    try:
        if not nested:
            from .atomic import atomic_write_text

            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": list(command) if command is not None else list(sys.argv)}
            atomic_write_text(run_dir / INFO_NAME, json.dumps(info))
        yield run_dir
    finally:
        if not nested:
            try:
                (run_dir / INFO_NAME).unlink(missing_ok=True)
            except OSError:
                pass
        lock.release()
