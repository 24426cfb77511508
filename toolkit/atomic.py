"""Atomic writes: readers see the old output or the new one, never half of one.

Files: :func:`atomic_path`, :func:`atomic_write_text`, :func:`atomic_torch_save`.
Folders (Zarr stores, report and save-maps folders): :func:`output_dir` / :func:`write_dir`,
the runtime's one directory-level atomic write (``maxrf_infer.atomic``) with the host's
error type.  Both follow one ownership rule (:func:`check_output`): an existing output is
replaced only when it is recognisably this tool's own output of the same kind (the
``owned_*`` predicates below), never a folder of other files, never an input.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import OutputError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was::

        with atomic_path("model.onnx") as tmp:
            onnx.save_model(model, tmp)

    After a successful write, temporaries that killed writers of ``path`` left beside it
    are removed (:func:`sweep_stale`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rt = _rt()
    tmp = rt.temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    rt.sweep_stale(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically (checkpoints, trained weights).

    torch is imported here, on first use, so that importing :mod:`maxrf_bench` stays light.
    Save plain tensors and containers of them, so the file loads with
    ``torch.load(path, weights_only=True)``.
    """
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# --- the ownership rule and the directory-level write (the runtime's, with our error type) ---

def _rt():
    from maxrf_infer import atomic

    return atomic


def check_output(path: str | os.PathLike, *, kind: str, owned: Callable[[Path], bool] | None = None,
                 inputs: Iterable[str | os.PathLike] = (), is_file: bool = False,
                 option: str = "-o") -> Path:
    """Refuse an output this command may not (re)place (:class:`OutputError`, exit 2); see
    :func:`maxrf_infer.atomic.check_output`."""
    rt = _rt()
    try:
        return rt.check_output(path, kind=kind, owned=owned, inputs=inputs, is_file=is_file,
                               option=option)
    except rt.OutputError as exc:
        raise OutputError(str(exc)) from None


@contextmanager
def output_dir(path: str | os.PathLike, *, kind: str, owned: Callable[[Path], bool] | None = None,
               inputs: Iterable[str | os.PathLike] = (), option: str = "-o",
               create: bool = True) -> Iterator[Path]:
    """A temporary folder to fill that replaces ``path`` on success (the one directory-level
    atomic write, :func:`maxrf_infer.atomic.output_dir`)."""
    rt = _rt()
    try:
        with rt.output_dir(path, kind=kind, owned=owned, inputs=inputs, option=option,
                           create=create) as tmp:
            yield tmp
    except rt.OutputError as exc:
        raise OutputError(str(exc)) from None


def write_dir(path: str | os.PathLike, fill: Callable[[Path], object], **kwargs) -> Path:
    """``fill(tmp)`` writes into a temporary folder that then replaces ``path`` atomically."""
    with output_dir(path, **kwargs) as tmp:
        fill(tmp)
    return Path(path)


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers of ``path`` left beside it."""
    return _rt().sweep_stale(path)


def location_error(exc: BaseException, path: str | os.PathLike, what: str = "output"):
    """The :class:`OutputError` for an OS error about an output location, else ``None``."""
    err = _rt().output_os_error(exc, path, what)
    return None if err is None else OutputError(str(err))


# --- what is ours: one predicate per kind of output ------------------------------------

def _zattrs(path: Path) -> dict | None:
    return _rt().zarr_attrs(path)


def owned_scan(path: Path) -> bool:
    """A scan store of ours: Zarr with the schema's ``schema_version`` attribute."""
    attrs = _zattrs(path)
    return attrs is not None and "schema_version" in attrs


def owned_cell_store(path: Path) -> bool:
    """A store this tool wrote: a run's (``cells/…/sr.zarr``, ``inputs/*.zarr``), a scan, or
    a ``maxrf-infer`` output."""
    attrs = _zattrs(path)
    return attrs is not None and ("normalisation" in attrs or "fingerprint" in attrs
                                  or "schema_version" in attrs
                                  or attrs.get("producer") == "maxrf-infer")



# --- names that become file names -----------------------------------------------------

#: the longest file-name stem made from a name (bytes); file systems allow 255 per name,
#: and suffixes, temporaries (``.NAME.tmp-…``) and prefixes need the rest
STEM_MAX_BYTES = 100


def safe_stem(text: str, max_bytes: int = STEM_MAX_BYTES) -> str:
    """A file-name stem for an element, dataset or column name: letters, digits and
    ``_.+=-`` kept, anything else ``_``; a long name is cut and ends in a hash of the whole
    name, so two long names that share a beginning stay apart."""
    import hashlib
    import re

    text = str(text)
    stem = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("._") or "x"
    if len(stem.encode()) > max_bytes:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        stem = f"{stem[:max_bytes - 9]}-{digest}"
    return stem


def unique_stems(texts: Iterable[str], max_bytes: int = STEM_MAX_BYTES) -> list[str]:
    """:func:`safe_stem` of each name, made unique (case-insensitively: ``_2``, ``_3``…)."""
    names, seen = [], set()
    for text in texts:
        base = safe_stem(text, max_bytes)
        name, k = base, 2
        while name.lower() in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name.lower())
        names.append(name)
    return names
