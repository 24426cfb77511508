"""Run-directory files are validated when they are read.

``results.csv``, ``manifest.json`` and ``cells/…/cell.json`` are written atomically by
``maxrf-bench run``; one that is cut short, edited by hand or written by something else is
refused when it is read with one line naming the file and the field (a
:class:`~maxrf_bench.StoreError`, exit 2), never a ``KeyError`` deep inside a command.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import StoreError

__all__ = ["check_cell", "check_manifest", "read_json"]

_NUMBER = (int, float)


def read_json(path: str | Path, what: str) -> dict:
    """The JSON object in ``path``; :class:`StoreError` naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{str(path)!r} does not exist; expected the {what}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {str(path)!r}: expected the {what} (JSON), found "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{str(path)!r}: expected the {what} (a JSON object), found "
                         f"{type(data).__name__}")
    return data


def _field(data: dict, key: str, types, path: Path, where: str = "", optional: bool = False) -> Any:
    name = f"{where}{key}"
    if key not in data:
        if optional:
            return None
        raise StoreError(f"{str(path)!r}: field {name!r} is missing; expected a file written by "
                         "maxrf-bench run (a cut-short or hand-edited file is not read)")
    value = data[key]
    if optional and value is None:
        return None
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise StoreError(f"{str(path)!r}: field {name!r} must be {want}, found "
                         f"{type(value).__name__} {value!r:.60}")
    return value


def _object(value: Any, name: str, path: Path) -> dict:
    """``value`` when it is a JSON object; else the one-line refusal naming the field."""
    if not isinstance(value, dict):
        raise StoreError(f"{str(path)!r}: field {name!r} must be an object, found "
                         f"{type(value).__name__}")
    return value


def check_manifest(manifest: dict, path: str | Path, *, complete: bool = True) -> dict:
    """The fields of a run's manifest that commands read (rerun, report, table).

    ``complete``: ``options``, ``columns`` and ``inputs`` must be there (rerun); else only the
    fields present are checked (a report or a table of an older run)."""
    path = Path(path)
    opt = not complete
    _field(manifest, "command", list, path, optional=True)
    options = _field(manifest, "options", dict, path, optional=opt) or {}
    _field(options, "seeds", list, path, "options.", optional=True)
    _field(options, "metrics", list, path, "options.", optional=True)
    _field(manifest, "noise_ceiling_db", dict, path, optional=True)
    columns = _field(manifest, "columns", dict, path, optional=opt) or {}
    for label, col in columns.items():
        where = f"columns.{label}."
        _object(col, f"columns.{label}", path)
        _field(col, "method", str, path, where)
        _field(col, "params", dict, path, where)
        _field(col, "variant", str, path, where, optional=True)
    inputs = _field(manifest, "inputs", dict, path, optional=opt) or {}
    for key, info in inputs.items():
        where = f"inputs.{key}."
        _object(info, f"inputs.{key}", path)
        _field(info, "dataset", str, path, where)
        _field(info, "fingerprint", str, path, where)
        op = _field(info, "operator", dict, path, where)
        _field(op, "name", str, path, where + "operator.")
        _field(op, "scale", int, path, where + "operator.")
        _field(info, "saved", str, path, where, optional=True)
    timings = _field(manifest, "timings", list, path, optional=True) or []
    for i, t in enumerate(timings):
        _object(t, f"timings[{i}]", path)
        if t.get("error"):
            _field(t, "dataset", str, path, f"timings[{i}].")
            _field(t, "error", str, path, f"timings[{i}].")
            _field(t, "columns", list, path, f"timings[{i}].", optional=True)
    return manifest


def check_cell(meta: dict, path: str | Path) -> dict:
    """The fields of a cell's ``cell.json`` that commands read (reuse, rerun, export)."""
    path = Path(path)
    _field(meta, "key", str, path)
    _field(meta, "dataset", str, path)
    _field(meta, "method", str, path)
    _field(meta, "params", dict, path)
    _field(meta, "seed", int, path, optional=True)
    _field(meta, "scale", int, path)
    _field(meta, "seconds", _NUMBER, path)
    metrics = _field(meta, "metrics", dict, path)
    for variant, tables in metrics.items():
        if not isinstance(tables, dict) or not all(
                isinstance(t, dict) and all(isinstance(r, dict) and all(
                    isinstance(v, _NUMBER) for v in r.values()) for r in t.values())
                for t in tables.values()):
            raise StoreError(f"{str(path)!r}: field 'metrics.{variant}' must map truth → metric → "
                             "element → number")
    _field(meta, "elements", list, path, optional=True)
    return meta
