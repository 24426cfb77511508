"""Provenance of a run: package versions, the git commit, the machine, the environment
variables that can change a cell's numbers, and the *method identity* of each method (the
plugin that registered it, its version and a hash of its code), which is part of every
cell key so that a changed plugin is rerun."""
from __future__ import annotations

import hashlib
import inspect
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from .plugins import get_registry
from .types import Method

__all__ = ["REPRO_ENV", "git_commit", "host_info", "method_identity", "package_versions",
           "repro_environment", "source_path"]

#: environment variables that can change a cell's numbers (threads, hashing, GPU maths)
REPRO_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED",
             "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES", "MAXRF_BENCH_STRICT_PLUGINS")


def repro_environment() -> dict[str, str]:
    """The variables of :data:`REPRO_ENV` that are set, with their values."""
    return {k: os.environ[k] for k in REPRO_ENV if k in os.environ}


def source_path(source: str) -> str | None:
    """The absolute path of a dataset given as a store path (``None`` for a plugin's dataset)."""
    if not source or source.startswith("dataset plugin "):
        return None
    return str(Path(source).resolve())


def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["maxrf-bench", "numpy", "scipy", "xarray", "zarr", "pluggy", "click", "torch",
             "onnx", "onnxruntime", "onnxruntime-gpu", "dask", "spandrel"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if res.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return res.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def host_info() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0]}


# --- method identity ------------------------------------------------------------------

def _code_files(src: Path) -> list[Path]:
    """``src`` and the modules of its own directory tree that it imports, transitively
    (relative imports, ``from . import x`` and ``from .x import y``, parsed, not run); for a
    package's ``__init__``, the whole package."""
    import ast

    if src.name == "__init__.py":
        return sorted(src.parent.rglob("*.py"))
    seen: list[Path] = []
    todo = [src]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.append(f)
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                for n in names:
                    base = f.parent.joinpath(*n.split("."))
                    todo += [base.with_suffix(".py")] if base.with_suffix(".py").is_file() \
                        else sorted(base.rglob("*.py")) if base.is_dir() else []
    return sorted(seen)


def method_identity(name: str, method: Method) -> dict:
    """The *method identity*: ``{"plugin", "plugin_version", "code_hash"}``, the plugin that
    registered ``method``, its version, and a hash of its code.

    The code is the module that defines ``run`` with the sibling modules it imports
    relatively (transitively), or the whole package when ``run`` is defined in a package's
    ``__init__``; for a wrapped ``run`` (``__wrapped__``), that of every function it wraps.
    A change the hash cannot see (an absolute import of another module of the plugin)
    needs a new plugin version or ``--force``.
    """
    reg = get_registry()
    try:
        owner = reg.owner_of("methods", name)
    except KeyError:
        owner = ""
    info = reg.plugins.get(owner)
    # a wrapped ``run`` (functools.wraps, e.g. a shared driver around each method's own
    # function) counts the code of every function along its ``__wrapped__`` chain
    files: list[Path] = []
    fn, seen = method.run, set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        try:
            src = Path(inspect.getsourcefile(fn) or "")
        except TypeError:
            src = Path("")
        if src.is_file():
            files += [f for f in _code_files(src) if f not in files]
        fn = getattr(fn, "__wrapped__", None)
    files.sort()
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.name.encode())
            h.update(f.read_bytes())
        except OSError:
            pass
    return {"plugin": owner, "plugin_version": info.version if info else "",
            "code_hash": h.hexdigest()[:16] if files else ""}
