"""The comparison grid on dask.distributed (``maxrf-bench run --scheduler``, issue 14).

Two 32 × 32 toy scans × two quick methods.  One 2-worker ``LocalCluster`` (processes, one
thread each, loopback) serves the equality, resume and kill tests; the last test starts
``dask scheduler`` and ``dask worker`` as a user would and runs the command line against
the address.  The results must equal the sequential run's, value for value.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import maxrf_bench as mb
from maxrf_bench.rundir import CELL_RECORD, CELLS, DETERMINISTIC, WORK
from maxrf_bench.runner import RunConfig, Runner
from maxrf_bench.scheduler import available_cores
from maxrf_bench.testing import registered_plugin, toy_scene

distributed = pytest.importorskip("distributed")

import cluster_plugin  # noqa: E402  (tests/ is on sys.path; the workers import it too)

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
METHODS = ["bicubic", "guided"]


def values(run_dir: Path) -> dict[tuple, str]:
    """results.csv as {(dataset, protocol, method, seed, truth, element, metric): value as
    written (``repr`` of the float: equal strings are equal values, NaN included)}, without
    the wall times."""
    with open(run_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {(r["dataset"], r["protocol"], r["method"], r["seed"], r["truth"], r["element"],
             r["metric"]): r["value"] for r in rows if r["metric"] != "seconds"}


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("scans")
    return [str(mb.save_scan(mb.make_scan(**toy_scene(32, seed=i), title=name), d / f"{name}.zarr"))
            for i, name in enumerate(["toya", "toyb"])]


@pytest.fixture(scope="module")
def sequential(scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential") / "run"
    mb.run_grid(METHODS, scans, out=out)
    return values(out)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1",
                                  scheduler_kwargs={"dashboard_address": ":0"}) as c:
        yield c


def test_scheduler_option_is_parsed_once_for_infer_and_run(tmp_path):
    from maxrf_infer.cluster import SchedulerError, parse_scheduler

    assert parse_scheduler(None) is None
    assert parse_scheduler("Threads") == "threads" and parse_scheduler("processes") == "processes"
    assert parse_scheduler("10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert parse_scheduler("tls://head:8786/") == "tls://head:8786"
    f = tmp_path / "scheduler.json"
    f.write_text(json.dumps({"address": "tcp://127.0.0.1:4321", "type": "Scheduler"}))
    assert parse_scheduler(str(f)) == "tcp://127.0.0.1:4321"
    for bad in ("thread", "tcp://head", "head:port", "http://head:8786", str(tmp_path / "no.json")):
        with pytest.raises(SchedulerError, match="--scheduler"):
            parse_scheduler(bad)


def test_bad_scheduler_one_line_exit_2_nothing_written(tmp_path, scans):
    from click.testing import CliRunner

    from maxrf_bench.cli import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "-m", "bicubic", "-d", scans[0], "-o", str(out),
                                   "--scheduler", "thread"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "Error: --scheduler expects threads, processes, the address of a dask.distributed scheduler "
        "(tcp://host:8786) or its scheduler file (JSON), found 'thread'"]
    assert not out.exists()


def rows(run_dir: Path) -> list[tuple]:
    """Every row of results.csv but the wall times, every column (misregister, scan_time)."""
    with open(run_dir / "results.csv", newline="") as f:
        return sorted(tuple(r.values()) for r in csv.DictReader(f) if r["metric"] != "seconds")


@pytest.mark.timeout(240)
def test_a_resumed_misregistration_sweep_on_the_cluster_keeps_each_rows_amplitude(cluster, scans, tmp_path):
    """The cluster's executor reuses finished cells in the client; their rows must keep the
    amplitude they were run at (they were written with an empty ``misregister`` before)."""
    cfg = dict(methods=["guided"], datasets=scans[:1], misregister=[0.0, 1.0])
    mb.run_grid(**cfg, out=tmp_path / "seq")
    want = rows(tmp_path / "seq")
    assert {r[-1] for r in want} == {"0", "1"}
    out = tmp_path / "run"
    Runner(RunConfig(**cfg, out=out, scheduler=cluster.scheduler_address)).run()
    assert rows(out) == want
    again = Runner(RunConfig(**cfg, out=out, scheduler=cluster.scheduler_address)).run()
    assert all(c.reused for c in again) and rows(out) == want


@pytest.mark.timeout(240)
def test_local_cluster_equals_sequential_and_resumes(cluster, scans, sequential, tmp_path):
    out = tmp_path / "run"
    cells = Runner(RunConfig(METHODS, scans, out=out, scheduler=cluster.scheduler_address)).run()
    assert values(out) == sequential
    workers = set(cluster.scheduler_info["workers"])
    m = manifest(out)
    assert len(m["timings"]) == 4 and {t["worker"] for t in m["timings"]} <= workers
    assert [(t["dataset"], t["method"]) for t in m["timings"]] == [
        ("toya", "bicubic"), ("toya", "guided"), ("toyb", "bicubic"), ("toyb", "guided")]
    assert m["options"]["scheduler"] == cluster.scheduler_address
    share = max(1, available_cores() // 2)  # 2 one-thread workers on this host
    assert {w["cell_threads"] for w in m["cluster"]["workers"].values()} == {share}
    assert all(not c.reused and c.worker in workers for c in cells)
    # the per-column maps over seeds are written by the client, as sequentially
    assert mb.load_maps(out, "toyb", "guided")["maps"].shape == (4, 32, 32)
    # resume: the sequential runner reuses every cell the cluster wrote, and vice versa
    again = Runner(RunConfig(METHODS, scans, out=out)).run()
    assert all(c.reused for c in again) and [c.worker for c in again] == [c.worker for c in cells]
    assert values(out) == sequential
    again = Runner(RunConfig(METHODS, scans, out=out, scheduler=cluster.scheduler_address)).run()
    assert all(c.reused for c in again) and values(out) == sequential
    # threads: one in-process worker, same values
    Runner(RunConfig(METHODS, scans, out=tmp_path / "threads", scheduler="threads")).run()
    assert values(tmp_path / "threads") == sequential


@pytest.mark.timeout(240)
def test_worker_killed_mid_cell_loses_only_that_cell(cluster, scans, sequential, tmp_path):
    out = tmp_path / "run"
    cfg = RunConfig(["bicubic", "guided", "sleepy"], scans[:1], out=out,
                    sets={"sleepy": {"seconds": 60}}, scheduler=cluster.scheduler_address)
    with distributed.Client(cluster, set_as_default=False) as client:
        pid_of = {pid: addr for addr, pid in client.run(os.getpid).items()}
    killed: dict = {}

    def killer():
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not killed:
            attempts = sorted(out.glob(f"{CELLS}/toya/sleepy*/{DETERMINISTIC}/{WORK}/attempt-*.json"))
            finished = {p: p.stat().st_mtime_ns for p in out.glob(f"{CELLS}/toya/*/*/{CELL_RECORD}")}
            if attempts and finished:  # a cell is done and sleepy is pausing: kill its worker
                record = json.loads(attempts[0].read_text())
                killed.update(record, attempt=attempts[0], finished=finished)
                os.kill(record["pid"], signal.SIGKILL)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    with registered_plugin(cluster_plugin):
        thread.start()
        t0 = time.monotonic()
        cells = Runner(cfg).run()
        thread.join(5)
    assert killed, "the test never saw the sleepy cell start"
    assert time.monotonic() - t0 < 60  # the retried attempt did not pause: the kill cut the first
    assert [(c.method, c.error) for c in cells] == [
        ("bicubic", None), ("guided", None), ("sleepy[seconds=60]", None)]
    # the killed cell ran again in another process, on another worker; finished cells stayed
    work = killed["attempt"].parent
    pids = [json.loads(p.read_text())["pid"] for p in work.glob("attempt-*.json")]
    assert len(pids) == 2 and killed["pid"] in pids
    assert {p: p.stat().st_mtime_ns for p in killed["finished"]} == killed["finished"]
    assert cells[2].worker and cells[2].worker != pid_of[killed["pid"]]
    assert (work.parent / "cell.json").exists()
    # every cell is in results.csv; bicubic's and guided's values are the sequential run's
    got = values(out)
    assert {k[2] for k in got} == {"bicubic", "guided", "sleepy[seconds=60]"}
    assert {k: v for k, v in got.items() if k[2] != "sleepy[seconds=60]"} == {
        k: v for k, v in sequential.items() if k[0] == "toya"}
    # the cell saw its share of the cores (2 one-thread workers on this host)
    assert killed["omp"] == str(max(1, available_cores() // 2))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(240)
def test_cli_against_dask_scheduler_and_workers(scans, sequential, tmp_path):
    """`dask scheduler` and `dask worker` on loopback, then `maxrf-bench run --scheduler ADDRESS`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "w")
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--dashboard-address", ":0",
                               "--scheduler-file", str(sched_file)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)]
    try:
        procs.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", "--scheduler-file", str(sched_file), "--nworkers", "2",
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline, address = time.monotonic() + 60, None
        while address is None and time.monotonic() < deadline:
            try:  # the scheduler writes the file in place: wait for whole JSON
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        assert address, (tmp_path / "cluster.log").read_text()[-3000:]
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=90)
            workers = set(client.scheduler_info()["workers"])
        out = tmp_path / "run"
        res = subprocess.run([str(BIN / "maxrf-bench"), "run", "-m", ",".join(METHODS), "-d",
                              ",".join(scans), "-o", str(out), "--scheduler", address],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert values(out) == sequential
        m = manifest(out)
        assert {t["worker"] for t in m["timings"]} <= workers and len(m["timings"]) == 4
        assert set(m["cluster"]["workers"]) == workers
        lines = [ln for ln in res.stderr.splitlines() if ": done in " in ln]
        assert len(lines) == 4 and all(" on tcp://127.0.0.1:" in ln for ln in lines)
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


def test_the_client_reads_a_cells_raw_output_without_dask(tmp_path):
    """The run's client aggregates a column's maps (``read_raw``) while its dask client is
    current.  A dask-backed read was scheduled on the cluster's workers, so it waited for the
    cells that held every worker: on a 2-worker 512² grid, finished cells were recorded (and
    their status lines printed) only minutes later, in bulk.  The read must not go through
    dask at all: here any dask compute raises."""
    import dask
    import numpy as np

    from maxrf_bench.rundir import read_raw

    d = toy_scene(32, seed=3)
    scan = mb.save_scan(mb.make_scan(maps=d["maps"], rgb=d["rgb"], elements=d["elements"]),
                        tmp_path / "toy.zarr")
    Runner(RunConfig(methods=["bicubic"], datasets=[str(scan)], out=tmp_path / "run")).run()
    (cell,) = [c.parent for c in (tmp_path / "run" / CELLS).rglob(CELL_RECORD)]

    def no_dask(*args, **kwargs):
        raise AssertionError("read_raw computed through dask")

    with dask.config.set(scheduler=no_dask):
        raw = read_raw(cell)
    assert raw.dtype == np.float32 and raw.shape == (d["maps"].shape[0], 32, 32)
    assert np.isfinite(raw).all() and raw.std() > 0
