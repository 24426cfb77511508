"""The one directory-level atomic write, and the rule on what an output may replace.

Every writer of a folder-shaped output (``maxrf-infer``'s Zarr store, ``maxrf-bench``'s
scans, cells, reports and saved maps) goes through :func:`write_dir`:

1. :func:`check_output` first, before any work: the destination must be new, an empty
   folder, or **recognisably this tool's own output of the same kind** (the writer's
   ``owned`` predicate: a Zarr store with our schema attributes, a report folder with our
   marker, a save-maps folder whose manifest lists every file in it…).  It is never a
   plain file, never a folder of other files, and never equal to, inside, or holding any
   of the command's inputs.  A refusal is one line (:class:`OutputError`, exit 2) and
   nothing is written.
2. The output is built in a temporary sibling ``.NAME.tmp-…`` and swapped into place at the
   end (the old output is moved aside as ``.NAME.old-…`` and deleted), so readers see the
   old output or the new one, and a failure leaves the old one as it was.
3. After a successful swap, the temporaries of earlier runs of the same writer that were
   killed (``.NAME.tmp-…``, ``.NAME.old-…`` siblings whose process is gone) are removed.

An OS error about the output location (read-only file system, a name too long, no space
left, no permission) is an :class:`OutputError` too: the user chose the location.

This module needs only the standard library: the runtime installs alone, and
``maxrf_bench`` (the host) uses it through ``maxrf_bench.atomic``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

__all__ = ["OutputError", "check_output", "is_inside", "output_os_error", "owned_zarr",
           "sweep_stale", "temporary_name", "write_dir", "zarr_attrs"]

#: OS errors that describe the output location, not a bug: the user chose the location.
LOCATION_ERRNOS = {errno.EROFS: "the file system is read-only",
                   errno.ENAMETOOLONG: "a file name is too long for the file system",
                   errno.ENOSPC: "no space is left on the device",
                   errno.EDQUOT: "the disk quota is exceeded",
                   errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted",
                   errno.ENOTDIR: "a part of the path is a file, not a folder",
                   errno.EEXIST: "the path exists",
                   errno.EISDIR: "the path is a folder",
                   errno.EFBIG: "the file is too large for the file system"}

#: a killed writer's leftovers are kept this long when their host cannot be checked
_FOREIGN_GRACE_S = 24 * 3600


class OutputError(Exception):
    """The output location cannot be written, or is not ours to replace (exit code 2)."""

    exit_code = 2


#: errors that can only be about where something is written
_WRITE_ONLY = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG}


def output_os_error(exc: BaseException, path: str | os.PathLike, what: str = "output"
                    ) -> OutputError | None:
    """An :class:`OutputError` for an OS error about the output location ``path`` (or its
    temporary sibling), else ``None`` (an error about an input, or a bug)."""
    if not isinstance(exc, OSError):
        return None
    reason = LOCATION_ERRNOS.get(getattr(exc, "errno", None))
    if reason is None:
        return None
    where = exc.filename if getattr(exc, "filename", None) else path
    if exc.errno not in _WRITE_ONLY and getattr(exc, "filename", None):
        # permission, not-a-folder…: only when the failing path is the output or beside it
        name, base = str(exc.filename), Path(path)
        if not (name.startswith(str(base)) or name.startswith(str(base.with_name(f".{base.name}.")))):
            return None
    return OutputError(f"cannot write the {what} {str(path)!r}: {reason} ({os.strerror(exc.errno)}: "
                       f"{str(where)!r}); expected a writable location with free space and names "
                       "the file system accepts; nothing was written")


def os_error_line(exc: BaseException) -> str | None:
    """The one line for an OS error that is the user's to fix wherever it happened (read-only
    file system, no space, quota, a name too long), else ``None`` (then it may be a bug)."""
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_ONLY:
        return None
    where = f" {str(exc.filename)!r}" if getattr(exc, "filename", None) else ""
    return (f"cannot write{where}: {LOCATION_ERRNOS[exc.errno]} ({os.strerror(exc.errno)}); "
            "expected a writable location with free space and names the file system accepts")


# --- what may be replaced -----------------------------------------------------------

def is_inside(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies inside it (paths resolved, symbolic links followed)."""
    try:
        inner, outer = Path(inner).resolve(), Path(outer).resolve()
    except (OSError, RuntimeError):
        return False
    return inner == outer or outer in inner.parents


def zarr_attrs(path: Path) -> dict | None:
    """The root attributes of a Zarr store (format 2 or 3), or ``None`` when ``path`` is not one."""
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        if (path / ".zmetadata").is_file():
            meta = json.loads((path / ".zmetadata").read_text())
            return dict(meta.get("metadata", {}).get(".zattrs", {}) or {})
        if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
            z = path / ".zattrs"
            return dict(json.loads(z.read_text())) if z.is_file() else {}
        if (path / "zarr.json").is_file():
            return dict(json.loads((path / "zarr.json").read_text()).get("attributes", {}) or {})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return None


def owned_zarr(test: Callable[[dict], bool]) -> Callable[[Path], bool]:
    """An ``owned`` predicate: a Zarr store whose root attributes pass ``test``."""
    def owned(path: Path) -> bool:
        attrs = zarr_attrs(path)
        return attrs is not None and bool(test(attrs))
    return owned


def _describe(path: Path) -> str:
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError:
        return "a folder that cannot be listed"
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"a folder of {len(names)} other entr{'y' if len(names) == 1 else 'ies'} ({shown})"


def check_output(path: str | os.PathLike, *, kind: str, owned: Callable[[Path], bool] | None = None,
                 inputs: Iterable[str | os.PathLike] = (), is_file: bool = False,
                 option: str = "-o") -> Path:
    """Refuse an output location this writer may not (re)place; return it as a ``Path``.

    ``kind`` names the output in messages ("Zarr store", "report folder"…); ``owned(path)``
    says whether an existing ``path`` is this tool's own output of that kind; ``inputs``
    are the paths the command reads.  ``is_file``: the output is one file, not a folder.
    """
    path = Path(path)
    try:
        return _check_output(path, kind, owned, inputs, is_file, option)
    except OSError as exc:  # a name too long, an unreadable parent…
        raise output_os_error(exc, path, kind) or OutputError(
            f"{option} {str(path)!r}: cannot use this location: {exc}") from None


def _check_output(path: Path, kind: str, owned, inputs, is_file: bool, option: str) -> Path:
    shown = f"{option} {str(path)!r}"
    for parent in path.parents:  # the nearest existing ancestor must be a folder
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{shown}: {str(parent)!r} is a file, not a folder; expected a "
                                  "path inside a folder (nothing was written)")
            break
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        if is_inside(inp, path):
            same = is_inside(path, inp)
            raise OutputError(f"{shown} {'is' if same else 'holds'} the input {str(inp)!r}; expected "
                              "an output path apart from the inputs (nothing was written)")
        if zarr_attrs(inp) is not None and is_inside(path, inp):
            raise OutputError(f"{shown} lies inside the input {str(inp)!r}; expected an output path "
                              "apart from the inputs (nothing was written)")
    if not (path.exists() or path.is_symlink()):
        return path
    ours = False
    if owned is not None:
        try:
            ours = bool(owned(path))
        except (OSError, ValueError):
            ours = False
    if ours:
        return path
    if is_file:
        if path.is_dir():
            raise OutputError(f"{shown} is a folder; expected a file path for the {kind}")
        raise OutputError(f"{shown} exists and is not a {kind} this tool wrote; expected a new path "
                          f"or a {kind} to replace (other files are never replaced)")
    if path.is_dir() and not path.is_symlink():
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise output_os_error(exc, path) or OutputError(f"{shown} cannot be listed: {exc}") from None
        if empty:
            return path
        raise OutputError(f"{shown} exists and is not a {kind} this tool wrote ({_describe(path)}); "
                          f"expected a new path, an empty folder or a {kind} to replace (a folder "
                          "of other files is never replaced)")
    what = "a symbolic link" if path.is_symlink() else "a file"
    raise OutputError(f"{shown} exists and is {what}, not a {kind} this tool wrote; expected a new "
                      f"path, an empty folder or a {kind} to replace")


# --- temporaries --------------------------------------------------------------------

def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temporary_name(path: Path, what: str = "tmp") -> Path:
    """A sibling ``.NAME.tmp-<random>-<host>-<pid>`` of ``path`` (``what``: tmp or old)."""
    return path.with_name(f".{path.name}.{what}-{uuid.uuid4().hex[:8]}-{_host_tag()}-{os.getpid()}")


_TEMP = re.compile(r"\.(?:tmp|old)-[0-9a-f]{8}(?:-([0-9a-f]{6})-(\d+))?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries a killed writer of ``path`` left beside it; return them.

    Only siblings named ``.NAME.tmp-…`` / ``.NAME.old-…`` are candidates, and one is left
    alone while the process that made it still runs (same host), or, when it was made on
    another host, for a day (a shared file system: its writer may still be at work)."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    host = _host_tag()
    for p in entries:
        if not p.name.startswith(prefix):
            continue
        m = _TEMP.search(p.name[len(prefix) - 1:])
        if not m or m.start() != 0:
            continue
        tag, pid = m.group(1), m.group(2)
        if tag is not None:
            if tag == host and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            if tag == host and int(pid) == os.getpid():
                continue  # this process may be writing it right now (another thread)
            if tag != host:
                try:
                    if time.time() - p.lstat().st_mtime < _FOREIGN_GRACE_S:
                        continue
                except OSError:
                    continue
        _remove(p)
        removed.append(p)
    return removed


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


# --- the write ----------------------------------------------------------------------

def _swap(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path``; the old ``path`` (if any) is moved aside, then deleted."""
    if path.exists() or path.is_symlink():
        old = temporary_name(path, "old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(old, path)  # put the old output back
            raise
        _remove(old)
    else:
        os.replace(tmp, path)


@contextmanager
def output_dir(path: str | os.PathLike, *, kind: str, owned: Callable[[Path], bool] | None = None,
               inputs: Iterable[str | os.PathLike] = (), option: str = "-o",
               create: bool = True) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces ``path`` (see the module doc).

    ``create``: make the temporary folder (else the caller's writer creates it, as
    ``xarray.to_zarr`` does).  Raises :class:`OutputError` for a location that is not ours
    to replace or that the OS refuses (read-only, name too long, no space)."""
    path = Path(path)
    inputs = list(inputs)
    check_output(path, kind=kind, owned=owned, inputs=inputs, option=option)
    tmp = temporary_name(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if create:
                tmp.mkdir()
        except OSError as exc:
            raise output_os_error(exc, path, kind) or exc from None
        try:
            yield tmp
        except OSError as exc:
            err = output_os_error(exc, path, kind)
            if err is not None:
                raise err from None
            raise
        # the destination may have appeared meanwhile: check again before the swap
        check_output(path, kind=kind, owned=owned, inputs=inputs, option=option)
        try:
            _swap(tmp, path)
        except OSError as exc:
            raise output_os_error(exc, path, kind) or exc from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)
    sweep_stale(path)


def write_dir(path: str | os.PathLike, fill: Callable[[Path], object], **kwargs) -> Path:
    """``fill(tmp)`` writes the output into the temporary folder ``tmp``; then it replaces
    ``path`` atomically.  Keyword arguments as :func:`output_dir`."""
    with output_dir(path, **kwargs) as tmp:
        fill(tmp)
    return Path(path)
