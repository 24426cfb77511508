"""Import spandrel, also where torchvision is installed but does not import.

Why this module exists
----------------------
spandrel (chaiNNer-org/spandrel, read: ``spandrel/__init__.py``,
``__helpers/main_registry.py``, ``__helpers/loader.py``) imports *every* architecture it
supports as soon as ``spandrel`` is imported: its ``MAIN_REGISTRY`` is built in
``spandrel/__init__.py``, and importing ``spandrel.architectures.HAT`` runs that first, so
the registry cannot be avoided.  Two of those architectures, LaMa (inpainting) and
RestoreFormer (face restoration), import names from torchvision at module level::

    LaMa/__arch/LaMa.py:         from torchvision.transforms.functional import InterpolationMode, rotate
    RestoreFormer/__init__.py:   from torchvision.transforms.functional import normalize

HAT and Swin2SR use no torchvision at all.  Where ``import torchvision`` fails, so does
``import spandrel``.  That is the case beside the CPU build of torch 2.13.0: PyPI's
torchvision 0.28.0 (the release for torch 2.13) is linked against the CUDA build of torch
(``libtorch_cuda.so``, ``libc10_cuda.so``); its C extension does not load, and the import
stops in ``torchvision/_meta_registrations.py`` with ``RuntimeError: operator
torchvision::nms does not exist``.  The fresh venv of ``.ci/run`` has exactly that
(``pip install torch==2.13.0 -e '.[test]'`` brings torchvision 0.28.0 with spandrel).

What :func:`import_spandrel` does
---------------------------------
1. ``import torchvision``.  If it works, spandrel is imported as it is: a working
   torchvision is never shadowed.
2. If it fails, spandrel is imported while ``sys.modules`` holds stand-ins for
   ``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional``
   that define exactly the three names above: ``InterpolationMode`` (an enum of the mode
   names: plain data) and ``rotate`` / ``normalize``, which raise a ``RuntimeError`` that
   quotes why torchvision did not import if anything ever calls them (only LaMa's and
   RestoreFormer's forward passes would; maxrf-bench runs neither).
3. Right after the import, ``sys.modules`` is put back as it was: the stand-ins are
   removed, so a later ``import torchvision`` anywhere fails exactly as it would have
   without us.  Only spandrel's LaMa and RestoreFormer modules keep references to the
   stand-in functions.

If a newer spandrel imports other torchvision names, the import fails cleanly with a
:class:`maxrf_bench.ConfigError` that says so (no broader stand-in is attempted).

Alternatives considered: loading HAT/Swin2SR through their architecture classes does not
help (the parent package import builds the registry first); a fake ``spandrel`` package
module that skips ``spandrel/__init__.py`` would shadow spandrel itself; switching to the
CUDA build of torch 2.14.1 with a matching torchvision is a 5.5 GB install for two
architectures we never run.
"""
from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types

import maxrf_bench as mb

#: The names spandrel 0.4 imports from ``torchvision.transforms.functional``.
STANDIN_NAMES = ("InterpolationMode", "rotate", "normalize")
_STANDIN_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
_MISSING = object()

#: Why torchvision did not import (``None`` when it did, or before :func:`import_spandrel`).
torchvision_error: str | None = None


def install_hint() -> str:
    """The pip command that adds spandrel without moving torch off its installed version."""
    try:
        from importlib.metadata import version

        torch_pin = f" torch=={version('torch').split('+')[0]}"
    except Exception:  # noqa: BLE001 - only a hint
        torch_pin = ""
    return f"pip install 'spandrel>=0.4'{torch_pin} (or pip install -e '.[sisr]')"


def torchvision_import_error() -> str | None:
    """``None`` when ``import torchvision`` works, else the error, as one line."""
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # noqa: BLE001 - any failure (ImportError, RuntimeError, OSError)
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def _standin_modules(reason: str) -> dict[str, types.ModuleType]:
    def unavailable(name: str):
        def call(*args, **kwargs):
            raise RuntimeError(
                f"torchvision.transforms.functional.{name} is not available: torchvision does not "
                f"import here ({reason}); maxrf-bench imported spandrel with a stand-in because "
                f"HAT and Swin2SR do not use torchvision")
        call.__name__ = name
        call.__qualname__ = name
        return call

    functional = types.ModuleType("torchvision.transforms.functional",
                                  "maxrf-bench stand-in (see maxrf_bench_plugins.sisr._spandrel)")
    functional.InterpolationMode = enum.Enum(  # type: ignore[attr-defined]
        "InterpolationMode", {n: n.lower() for n in
                              ("NEAREST", "NEAREST_EXACT", "BILINEAR", "BICUBIC", "BOX", "HAMMING", "LANCZOS")})
    functional.rotate = unavailable("rotate")  # type: ignore[attr-defined]
    functional.normalize = unavailable("normalize")  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms", functional.__doc__)
    transforms.functional = functional  # type: ignore[attr-defined]
    transforms.__path__ = []  # a package, so the submodule import resolves
    top = types.ModuleType("torchvision", functional.__doc__)
    top.transforms = transforms  # type: ignore[attr-defined]
    top.__path__ = []
    top.__maxrf_bench_standin__ = True  # type: ignore[attr-defined]
    return {"torchvision": top, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


def import_spandrel(method: str = "this method"):
    """Return the ``spandrel`` module, importing it as described in the module docstring.

    Raises :class:`maxrf_bench.ConfigError` (one line) when spandrel or one of its pure
    dependencies is not installed, or when it does not import even with the stand-in.
    """
    global torchvision_error
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise mb.ConfigError(f"{method} needs the spandrel package, which is not installed; "
                             f"install it with: {install_hint()}")
    torchvision_error = torchvision_import_error()
    try:
        if torchvision_error is None:
            return importlib.import_module("spandrel")
        saved = {name: sys.modules.get(name, _MISSING) for name in _STANDIN_MODULES}
        sys.modules.update(_standin_modules(torchvision_error))
        try:
            return importlib.import_module("spandrel")
        finally:
            for name, module in saved.items():
                if module is _MISSING:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
    except ModuleNotFoundError as exc:
        raise mb.ConfigError(f"{method}: spandrel needs the package {exc.name!r}, which is not "
                             f"installed; install it with: {install_hint()}") from None
    except ImportError as exc:
        where = ("" if torchvision_error is None else
                 f"; torchvision does not import here ({torchvision_error}) and maxrf-bench's "
                 f"stand-in defines only {', '.join(STANDIN_NAMES)} (what spandrel 0.4 needs)")
        raise mb.ConfigError(f"{method}: spandrel does not import: {exc}{where}; install a "
                             f"torchvision built for your torch") from None
