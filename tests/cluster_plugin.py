"""A toy method plugin for tests/test_cluster.py: ``sleepy``, bilinear upsampling after a pause.

Dask worker processes import it by name when they unpickle a cell's method (the method
object travels with the task; the worker needs the code): ``LocalCluster``'s spawned
workers inherit the test process's ``sys.path`` (which pytest gave ``tests/``), and the
``dask worker`` processes of the command-line test get ``PYTHONPATH=tests``.  A plugin
installed on the workers (an entry point, as users do) needs nothing of the sort.

Every attempt writes ``attempt-<pid>.json`` (its process id and the thread settings it
saw) into the cell's private ``workdir`` before it pauses, so a test can kill the worker
process in the middle of the cell and count the attempts.  Only the first attempt pauses.
"""
from __future__ import annotations

import json
import os
import time

import maxrf_bench as mb


def run(inputs: mb.MethodInputs, seconds: float = 0.0):
    """``(element, y, x)`` bilinear upsampling of ``inputs.maps_lr`` (normalised units)."""
    first = True
    if inputs.workdir is not None:
        first = not any(inputs.workdir.glob("attempt-*.json"))
        record = {"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"),
                  "torch": _torch_threads()}
        mb.atomic_write_text(inputs.workdir / f"attempt-{os.getpid()}.json", json.dumps(record))
    if first:
        time.sleep(float(seconds))
    return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")


def _torch_threads():
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method("sleepy", run, "bilinear upsampling after a pause (tests of the cluster runner)",
                       defaults={"seconds": 0.0}, uses_rgb=False, deterministic=True))
