"""The ``--scheduler threads|processes|ADDRESS`` option, in one place.

``maxrf-infer`` runs its tiles and ``maxrf-bench run`` its grid cells with it; the
benchmark imports it from here (``maxrf_infer`` never imports ``maxrf_bench``, so a scanner
workstation needs neither torch nor the benchmark).

Accepted values:

* ``threads``, ``processes``: on this machine;
* the address of a running ``dask.distributed`` scheduler: ``tcp://host:8786`` (also
  ``tls://``, ``ws://``, ``wss://``, ``ucx://``, ``inproc://``), ``host:8786`` (tcp);
* the path of a scheduler file, as ``dask scheduler --scheduler-file F`` writes it (JSON
  with an ``address``).
"""
from __future__ import annotations

import json
from pathlib import Path

from .model import InferError

#: the values that run on this machine
SCHEDULERS = ("threads", "processes")
#: what ``--scheduler`` accepts, for messages and ``--help``
SCHEDULER_HELP = ("threads, processes, the address of a dask.distributed scheduler "
                  "(tcp://host:8786) or its scheduler file (JSON)")
_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


class SchedulerError(InferError):
    """A ``--scheduler`` value that is malformed, or a scheduler that cannot be reached."""


def parse_scheduler(value: str | None) -> str | None:
    """``None`` (no dask), ``"threads"``, ``"processes"`` or a normalised scheduler address.

    Raises :class:`SchedulerError` (one line: what was expected, what was found) for a value
    that is none of these.  Nothing is contacted here: see :func:`connect`.
    """
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in SCHEDULERS:
        return text.lower()
    path = Path(text)
    if text.endswith(".json") or (path.is_file() and "://" not in text):
        return _address_from_file(path, value)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in _SCHEMES or not rest:
            raise SchedulerError(f"--scheduler expects {SCHEDULER_HELP}, found {value!r} "
                                 f"(known protocols: {', '.join(_SCHEMES)})")
        if scheme.lower() == "inproc":
            return text
        hostport = rest
    elif ":" in text:
        scheme, hostport = "tcp", text
    else:
        raise SchedulerError(f"--scheduler expects {SCHEDULER_HELP}, found {value!r}")
    host, _, port = hostport.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SchedulerError(f"--scheduler expects {SCHEDULER_HELP}, found {value!r} "
                             "(an address needs a host and a port, e.g. tcp://10.0.0.5:8786)")
    return f"{scheme.lower()}://{hostport.rstrip('/')}"


def _address_from_file(path: Path, value: str) -> str:
    try:
        address = json.loads(path.read_text())["address"]
    except FileNotFoundError:
        raise SchedulerError(f"--scheduler {value!r}: no such scheduler file; expected "
                             f"{SCHEDULER_HELP}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SchedulerError(f"--scheduler {value!r}: not a dask scheduler file (expected JSON "
                             f"with an 'address', as `dask scheduler --scheduler-file` writes; "
                             f"{type(exc).__name__}: {exc})") from None
    return parse_scheduler(str(address))


def connect(address: str, timeout: str = "10s"):
    """A ``distributed.Client`` of the scheduler at ``address`` (from :func:`parse_scheduler`),
    not set as the default client.  :class:`SchedulerError` when ``distributed`` is not
    installed or nothing answers there."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError(f"--scheduler {address!r} is a dask.distributed address, but the "
                             "'distributed' package is not installed (pip install distributed); "
                             f"or use one of {', '.join(SCHEDULERS)}") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(f"--scheduler {address!r}: cannot connect to a dask.distributed "
                             f"scheduler ({type(exc).__name__}: {exc}); expected {SCHEDULER_HELP}, "
                             "e.g. tcp://host:8786") from None
