"""The comparison grid as dask tasks: ``maxrf-bench run ... --scheduler threads|processes|ADDRESS``.

Without ``--scheduler`` the grid runs its cells one after another in this process
(:meth:`maxrf_bench.Runner.run`).  With it, every cell that is not finished yet becomes
one ``dask.distributed`` task:

* ``threads``: a ``LocalCluster`` of one worker in this process, one thread per cell
  slot (as many slots as cores, at most one per cell);
* ``processes``: a ``LocalCluster`` of one worker process per core, one cell at a time
  each (the better choice for torch methods: torch's thread settings are per process);
  local workers get no dask memory limit (a cell may use the machine's memory, as in the
  sequential run);
* an address (``tcp://host:8786``, ``host:8786``) or a scheduler file: a running cluster,
  started e.g. with ``dask scheduler`` and ``dask worker ADDRESS --nthreads 1`` on every
  machine.  The run directory must be on a file system that the client and every worker
  see at the same path (NFS, a cluster file system; on one machine any local path): the
  workers read the datasets from it and write the cells into it (the ``.zarr`` scans given
  with ``--datasets`` are read by the client only).  Every worker needs the same
  maxrf-bench and plugins installed (checked: a worker whose copy of a method's code
  differs from the client's refuses the cell).

The parsing of the option (and the connection to a scheduler) is ``maxrf_infer``'s
(:mod:`maxrf_infer.cluster`), shared with ``maxrf-infer --scheduler``.

How a run proceeds
------------------
1. The client resolves every name and dataset into the plan (:meth:`Runner.check`,
   nothing written on bad input; each dataset is prepared once per protocol point and
   shared by every method and seed), saves every dataset's inputs in the run directory
   and reuses, in its own process, every finished cell
   (:meth:`maxrf_bench.cells.CellRunner.reuse`, the test the sequential executor uses).
2. One task per remaining cell (:func:`run_cell_task`), the longest first
   (:func:`longest_first`: a cell's expected time is the recorded time of the same run
   on the run's finished cells, else the method's ``cost`` hint, scaled by the dataset's
   pixels × elements; the grid's order among equals), so the makespan does not end with
   one long cell started last on an otherwise idle cluster
   reads its dataset from the saved inputs (once per worker process and dataset, and
   checked against the client's inputs digest; not scattered, see :func:`load_prepared`)
   and calls :meth:`maxrf_bench.cells.CellRunner.run_cell` on the worker, which writes
   the cell's ``sr.zarr``, ``work/`` and, last, ``cell.json`` atomically; the task returns
   the ``CellResult``, tagged with the worker's address.
3. The client gathers results as they finish, prints each cell's status line
   (:meth:`maxrf_bench.cells.CellRunner.announce`, as sequentially, with the worker) and hands
   it to the run's :class:`maxrf_bench.cells.RunRecord`, which rewrites ``results.csv``
   and ``manifest.json`` (rows in the grid's order, each timing with its ``worker``) and
   writes a column's maps over seeds once its run's seeds are all in.  The manifest's ``cluster`` entry records the scheduler, the workers
   and the threads each cell got.

Failures
--------
* A worker that dies mid-cell (killed, out of memory, machine lost) loses only that cell:
  its ``cell.json`` was never written, so the half-written cell does not count, and the
  scheduler runs the task again on another (or the restarted) worker; a method with
  checkpoints in ``work/`` (``proposed``) resumes from its last one.  A cell that has
  killed ``distributed.scheduler.allowed-failures`` workers (3 by default) is reported as
  failed, and the others go on.
* An exception outside the method (e.g. a full disk) is retried once on the cluster, then
  the cell is reported as failed; a failing method is a failed cell at once, as in the
  sequential run (``error.log`` in its directory).
* A user error (:class:`maxrf_bench.MaxrfError`, e.g. a method's bad parameter) cancels
  the cells not started and ends the run with that one line, as in the sequential run.
* The client and the cells are independent: a client stopped with Ctrl-C leaves finished
  cells on disk and the same command resumes; cells already running on a remote cluster
  finish there.

Threads per cell
----------------
A cell gets ``max(1, cores // slots)`` CPU threads, where ``cores`` are the CPUs its
worker process may use and ``slots`` is the number of cells that machine runs at once
(the sum of ``--nthreads`` of the workers on that host), so the cells of one machine
share its cores without oversubscribing them: 2 cores and 2 one-thread workers give each
cell 1 thread; one worker with ``--nthreads 1`` on a 16-core machine gives its cell 16.
The task sets that number for torch (``torch.set_num_threads``), for BLAS/OpenMP
libraries already loaded (threadpoolctl) and, through ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, for those loaded later in the worker.
Methods that choose threads themselves stay within it: ``proposed``'s ``threads=0``
(auto) probes 1 against the cell's share, ``cs2dips``'s ``threads=0`` keeps it, and the
fusion baselines run BLAS on one thread anyway.  With ``threads`` all cells share one
process, so the setting is process-wide (same value for every cell) and is restored when
the run ends; ``processes`` or a cluster isolates them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .errors import ConfigError, MaxrfError
from .torchutil import torch_thread_count

if TYPE_CHECKING:
    from .config import RunConfig
    from .prepare import Prepared
    from .cells import CellResult, CellRunner, Plan, RunUnit

__all__ = ["RemoteError", "available_cores", "expected_cost", "longest_first", "open_client",
           "parse_scheduler", "restoring_settings", "run_cell_task", "run_on_dask",
           "set_cell_threads", "threads_per_worker"]

#: thread-count variables that libraries read when they load
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class RemoteError(MaxrfError):
    """A user error raised in a cell on a worker (the original message, same exit code)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


def parse_scheduler(value: str | None) -> str | None:
    """``maxrf_infer``'s parsing of ``--scheduler``, its error turned into a ConfigError."""
    from maxrf_infer.cluster import SchedulerError, parse_scheduler as _parse

    try:
        return _parse(value)
    except SchedulerError as exc:
        raise ConfigError(str(exc)) from None


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --- the cluster -----------------------------------------------------------------------

@contextmanager
def open_client(scheduler: str, n_cells: int) -> Iterator:
    """A ``distributed.Client`` for ``scheduler`` (parsed), closed on exit; a local cluster
    for ``threads`` / ``processes`` sized to ``min(cores, n_cells)`` cell slots."""
    from maxrf_infer.cluster import SCHEDULERS, SchedulerError, connect

    if scheduler not in SCHEDULERS:
        try:
            client = connect(scheduler)
        except SchedulerError as exc:
            raise ConfigError(str(exc)) from None
        with client:
            yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(f"--scheduler {scheduler} runs the grid on a local dask.distributed "
                          "cluster, but the 'distributed' package is not installed (pip install "
                          "'maxrf-bench[cluster]'); expected it, or no --scheduler") from None
    n = max(1, min(available_cores(), n_cells))
    # No dashboard; the scheduler's HTTP routes (health, metrics) on a free port, not 8787.
    # No memory limit per worker (dask's default would restart a worker past 95 % of
    # RAM / n, e.g. one large training cell on a 2-worker machine): as sequentially, a
    # cell may use the machine's memory.
    kw = dict(dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
              silence_logs=logging.ERROR, memory_limit=0)
    if scheduler == "processes":
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **kw)
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=n, processes=False, **kw)
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def threads_per_worker(client) -> dict[str, dict]:
    """Per worker address: ``host``, ``nthreads`` (cell slots), ``cores`` and the
    ``cell_threads`` each of its cells gets (``max(1, cores // slots of its host)``)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        return {}
    cores = client.run(available_cores)
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info["nthreads"])
    out = {}
    for addr, info in workers.items():
        c = int(cores.get(addr, 1))
        out[addr] = {"host": info["host"], "name": str(info.get("name", "")),
                     "nthreads": int(info["nthreads"]), "cores": c,
                     "cell_threads": max(1, c // max(1, slots[info["host"]]))}
    return out


# --- threads in a cell -----------------------------------------------------------------

def set_cell_threads(n: int) -> None:
    """Give this process's next cells ``n`` CPU threads for torch, BLAS and OpenMP (see the
    module docstring).  It stays in force: a worker's next cell wants the same (under
    ``--scheduler threads`` :func:`restoring_settings` restores the client's settings)."""
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)  # libraries already loaded; stays in force (not a context)
    except ImportError:  # pragma: no cover - optional
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)




@contextmanager
def restoring_settings() -> Iterator[None]:
    """Restore this process's thread settings (and dask's default scheduler) afterwards:
    ``--scheduler threads`` runs its cells in the client's own process, and ``rerun`` runs
    a cell on the thread count it recorded."""
    import dask

    env = {v: os.environ.get(v) for v in THREAD_ENV}
    dask_scheduler = dask.config.get("scheduler", None)
    torch_threads = torch_thread_count()
    try:
        from threadpoolctl import ThreadpoolController
        libs = [(lib, lib.num_threads) for lib in ThreadpoolController().lib_controllers]
    except (ImportError, AttributeError):  # pragma: no cover - optional
        libs = []
    try:
        yield
    finally:
        for var, value in env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        for lib, n in libs:
            lib.set_num_threads(n)
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)
        dask.config.set(scheduler=dask_scheduler)


# --- the task ----------------------------------------------------------------------------

def run_cell_task(config: RunConfig, out: str, dataset_key: str, inputs_digest: str, unit: RunUnit,
                  seed: int, threads: dict[str, dict]) -> CellResult:
    """One cell on a dask worker: :meth:`maxrf_bench.cells.CellRunner.run_cell` with the
    cell's thread share, quiet (the client prints the cell's status lines).  The dataset is
    read from the inputs saved in ``out`` (once per worker process, :func:`load_prepared`);
    ``threads`` is :func:`threads_per_worker` of the cluster when the grid started."""
    import dask
    from distributed import get_worker

    from .cells import CellRunner
    from .provenance import method_identity

    worker = get_worker()
    info = threads.get(worker.address)
    n = info["cell_threads"] if info else max(1, available_cores() // max(1, worker.state.nthreads))
    # Inside a task dask would send any array computation of the cell (xarray reading Zarr,
    # a method's own dask arrays) back to the cluster, where it waits for a slot that this
    # very task holds: a deadlock with one thread per worker.  The cell computes in its own
    # thread instead, within its thread share.  Process-wide and left so (dask.config.set
    # as a context is not thread-safe); ``--scheduler threads`` restores it afterwards.
    dask.config.set(scheduler="synchronous")
    out = Path(out)
    try:
        prep = load_prepared(out, dataset_key, inputs_digest)
        here = method_identity(unit.method_name, unit.method).get("code_hash")
        if here and unit.identity.get("code_hash") and here != unit.identity["code_hash"]:
            raise ConfigError(
                f"worker {worker.address} has another version of method {unit.method_name!r} "
                f"(code hash {here}, the client's {unit.identity['code_hash']}); install the same "
                "maxrf-bench and plugins on every worker")
        set_cell_threads(n)
        return CellRunner(config).run_cell(out, prep, unit, seed, worker=worker.address)
    except MaxrfError as exc:
        # not retried: the same input gives the same error; sent back as one line
        return _Fatal(str(exc), getattr(exc, "exit_code", 2))


@dataclasses.dataclass
class _Fatal:
    message: str
    exit_code: int = 2


_LOADED: dict[tuple[str, str], Prepared] = {}
_LOADING = threading.Lock()


def load_prepared(out: Path, dataset_key: str, inputs_digest: str) -> Prepared:
    """The dataset a cell runs on, rebuilt from the inputs the client saved
    (:func:`maxrf_bench.rundir.load_prepared`), kept for the worker's next cells (the last
    few datasets).

    Why not scatter it from the client: scattered data lives only in worker memory, and a
    worker that dies with it takes every cell of that dataset down ("lost scattered data");
    the saved inputs are on the shared file system and survive any worker.  The loaded
    dataset must have the client's inputs digest (what the methods see), else the run
    stops: the inputs changed under it.
    """
    from .rundir import load_prepared as _load

    key = (str(Path(out) / dataset_key), inputs_digest)
    with _LOADING:
        if key in _LOADED:
            return _LOADED[key]
        prep = _load(out, dataset_key, inputs_digest)
        while len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = prep
        return prep


# --- the order of the cells ---------------------------------------------------------------

#: the size a method's ``cost`` hint refers to: HR pixels × elements of a 512² scan of 21
REFERENCE_SIZE = 512 * 512 * 21
#: the expected seconds of a method without a hint or a recorded time (a fast baseline)
DEFAULT_COST = 1.0


def _size(prep: Prepared) -> float:
    return prep.rgb.sizes["y"] * prep.rgb.sizes["x"] * len(prep.elements) / REFERENCE_SIZE


def expected_cost(prep: Prepared, unit: RunUnit, recorded: dict[str, float] | None = None) -> float:
    """The expected seconds of ``unit`` on ``prep``: ``recorded`` seconds per reference size
    of that run label (from finished cells), else the method's ``cost`` hint, else
    :data:`DEFAULT_COST`; times the dataset's HR pixels × elements (per reference size)."""
    rate = (recorded or {}).get(unit.run_label)
    if rate is None:
        hint = getattr(unit.method, "cost", None)
        if callable(hint):
            try:
                hint = hint(unit.params)
            except Exception:  # noqa: BLE001 - a hint is only a hint
                hint = None
        rate = float(hint) if isinstance(hint, (int, float)) and hint > 0 else DEFAULT_COST
    return rate * _size(prep)


def recorded_rates(cells: list, results: dict[int, CellResult]) -> dict[str, float]:
    """``{run label: median seconds per reference size}`` of the finished cells ``results``
    (index into ``cells``), failed ones left out."""
    rates: dict[str, list[float]] = {}
    for i, res in results.items():
        prep, unit, _ = cells[i]
        if not res.error and res.seconds > 0:
            rates.setdefault(unit.run_label, []).append(res.seconds / max(_size(prep), 1e-12))
    return {k: statistics.median_high(v) for k, v in rates.items()}


def longest_first(cells: list, todo: list[int], recorded: dict[str, float] | None = None) -> list[int]:
    """``todo`` (indices into ``cells``, ``(prep, unit, seed)``) sorted by expected cost,
    the longest first; a stable sort, so equal costs keep the grid's order."""
    return sorted(todo, key=lambda i: -expected_cost(cells[i][0], cells[i][1], recorded))


# --- the grid --------------------------------------------------------------------------------

def run_on_dask(runner: CellRunner, out: Path, plan: Plan) -> list[CellResult]:
    """The dask executor: the plan of :meth:`Runner.check` (the run directory ``out`` locked
    by the caller) with its cells as dask tasks on ``runner.config.scheduler``.

    Returns the cells' results in the grid's order (datasets, runs, seeds), as the
    sequential executor does, and leaves the same files.
    """
    from .cells import RunRecord

    scheduler = parse_scheduler(runner.config.scheduler)
    record = RunRecord(runner, out, plan)
    record.begin()
    todo = []
    for i, (prep, unit, seed) in enumerate(record.cells):
        reused = runner.reuse(out, prep, unit, seed)  # in this process, as sequentially
        if reused is not None:
            record.record(i, reused, write=False)
        else:
            todo.append(i)
    finished = {i: r for i, r in enumerate(record.results) if r is not None}
    todo = longest_first(record.cells, todo, recorded_rates(record.cells, finished))
    record.set_cluster({"scheduler": scheduler, "workers": {}})
    if todo:
        with open_client(scheduler, len(todo)) as client:
            _run_tasks(runner, client, out, record, todo)
    return record.finish()


def _run_tasks(runner: CellRunner, client, out: Path, record, todo: list[int]) -> None:
    from distributed import as_completed

    from .cells import CellResult

    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - older distributed
        from distributed.scheduler import KilledWorker
    cfg = runner.config
    workers = threads_per_worker(client)
    record.set_cluster({"scheduler": record.cluster["scheduler"], "workers": workers})
    slots = sum(w["nthreads"] for w in workers.values())
    runner.echo(f"dask scheduler {client.scheduler.address}: {len(workers)} workers, {slots} cell "
                f"slots, {len(todo)} cells to run"
                + ("" if workers else " (no worker yet: the cells wait for one to join)"))
    token = uuid.uuid4().hex[:8]
    local = {}
    futures = []
    thread_restore = restoring_settings() if cfg.scheduler == "threads" else _nothing()
    with thread_restore, client.as_current():
        for order, i in enumerate(todo):
            prep, unit, seed = record.cells[i]
            fut = client.submit(run_cell_task, cfg, str(out.resolve()), prep.key, prep.inputs_digest,
                                unit, seed, workers,
                                key=f"maxrf-cell-{token}-{i}-{prep.key}-{unit.run_label}-{seed}",
                                retries=1, pure=False, priority=-order)
            local[fut.key] = i
            futures.append(fut)
        try:
            for fut in as_completed(futures):
                i = local[fut.key]
                prep, unit, seed = record.cells[i]
                try:
                    res = fut.result()
                except KilledWorker as exc:
                    res = CellResult(prep.name, unit.run_label, {}, 0.0, error=(
                        f"KilledWorker: the cell's worker died {_allowed_failures()} times running it "
                        f"(out of memory?): {exc}"), seed=seed, protocol=prep.protocol,
                        deterministic=unit.deterministic)
                except Exception as exc:  # noqa: BLE001 - one failing cell must not lose the others
                    res = CellResult(prep.name, unit.run_label, {}, 0.0,
                                     error=f"{type(exc).__name__}: {exc}", seed=seed,
                                     protocol=prep.protocol, deterministic=unit.deterministic)
                fut.release()
                if isinstance(res, _Fatal):
                    raise RemoteError(res.message, res.exit_code)
                runner.announce(res, unit, prep)
                record.record(i, res)
        except BaseException:
            client.cancel(futures)
            raise


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures", 3))
