"""Shared pieces of the reliability tests (tests/test_reliability_*.py, tests/test_bad_input.py).

* :data:`TOY_PLUGIN`: the source of a plugin made for these tests: a resumable, slow-able
  method ``slowtoy`` (checkpoints every step in its work directory, output fixed by the
  seed) and a slow-able metric ``slowmetric``; environment variables make them sleep or
  SIGKILL their own process at a chosen moment (during training, during a metric, at the
  N-th rename of any file: during a write, at the N-th checkpoint of a real method), or
  wait for a file to appear (``TOY_WAIT_FOR``).
* :func:`install_plugins` writes plugin modules into a folder and, optionally, a
  ``*.dist-info`` with ``maxrf_bench`` entry points, so a subprocess started with
  :func:`plugin_env` discovers them exactly as an installed third-party plugin.
* :func:`run_cli` starts ``maxrf-bench`` in a subprocess: the real console script, or
  (``light=True``) the same ``maxrf_bench.cli.main`` with a registry of only the plugins
  the test needs, which starts in a fraction of the time (the tests kill and restart runs
  many times).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BIN = Path(sys.executable).parent / "maxrf-bench"
ROOT = Path(__file__).resolve().parents[1]

TOY_PLUGIN = textwrap.dedent('''
    """slowtoy / slowmetric: a method and a metric made for the reliability tests."""
    import os
    import signal
    import time

    import numpy as np

    import maxrf_bench as mb

    def _kill_self():
        os.kill(os.getpid(), signal.SIGKILL)

    # during a write: SIGKILL at the N-th os.replace (every atomic write ends with one)
    _N = int(os.environ.get("TOY_KILL_AT_REPLACE", "0") or 0)
    if _N:
        _real_replace, _count = os.replace, [0]

        def _replace(src, dst, *a, **k):
            _count[0] += 1
            if _count[0] == _N:
                _kill_self()
            return _real_replace(src, dst, *a, **k)

        os.replace = _replace

    # during a checkpoint of the real method: SIGKILL at the N-th mb.atomic_torch_save
    _T = int(os.environ.get("TOY_KILL_AT_TORCH_SAVE", "0") or 0)
    if _T:
        _real_save, _saves = mb.atomic_torch_save, [0]

        def _save(obj, path):
            _saves[0] += 1
            if _saves[0] == _T:
                _kill_self()
            return _real_save(obj, path)

        mb.atomic_torch_save = _save

    def run(inputs, steps: int = 6, sleep: float = 0.0, amplitude: float = 0.01):
        """Bilinear upsampling plus ``steps`` seed-driven updates, one checkpoint per step."""
        up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear").astype(np.float64)
        state, start = np.zeros_like(up), 0
        ckpt = None if inputs.workdir is None else inputs.workdir / "toy-checkpoint.npz"
        if ckpt is not None and ckpt.exists():
            with np.load(ckpt, allow_pickle=False) as z:
                state, start = z["state"], int(z["step"])
            (inputs.workdir / "resumed-from").write_text(str(start))
        kill_at = int(os.environ.get("TOY_KILL_AT_STEP", "-1"))
        wait_for, t0 = os.environ.get("TOY_WAIT_FOR"), time.time()
        if wait_for:
            open(wait_for + ".waiting", "w").close()
        while wait_for and not os.path.exists(wait_for) and time.time() - t0 < 120:
            time.sleep(0.05)  # held until the test says go (concurrency tests)
        sleep = float(os.environ.get("TOY_SLEEP", sleep))
        for k in range(start, steps):
            if k == kill_at:
                _kill_self()
            time.sleep(sleep)
            rng = np.random.default_rng([inputs.seed, k])
            state = state + amplitude * rng.standard_normal(up.shape)
            if ckpt is not None:
                with mb.atomic_path(ckpt) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, state=state, step=np.int64(k + 1))
            inputs.progress(k + 1, steps, "toy step")
        return (up + state).astype(np.float32)

    def slow_metric(sr, truth, lr, operator):
        if os.environ.get("TOY_KILL_IN_METRIC"):
            _kill_self()
        time.sleep(float(os.environ.get("TOY_METRIC_SLEEP", "0")))
        err = np.abs(np.asarray(sr, np.float64) - truth).mean(axis=(1, 2))
        return err, float(err.mean())

    @mb.hookimpl
    def maxrf_bench_register_methods(register):
        register(mb.Method("slowtoy", run, "resumable toy method of the reliability tests",
                           defaults={"steps": 6, "sleep": 0.0, "amplitude": 0.01},
                           presets={"fast": {"steps": 4}}))

    @mb.hookimpl
    def maxrf_bench_register_metrics(register):
        register(mb.Metric("slowmetric", slow_metric, "mean absolute error, slowly"))
''')


def install_plugins(folder: Path, modules: dict[str, str], entry_points: dict[str, str] | None = None,
                    dist: str = "reliability-plugins") -> Path:
    """Write ``modules`` (name → source) into ``folder``; with ``entry_points`` (entry-point
    name → module), also a dist-info that registers them in the ``maxrf_bench`` group."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    if entry_points:
        info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[maxrf_bench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
        (info / "top_level.txt").write_text("".join(f"{m}\n" for m in modules))
    return folder


def plugin_env(folder: Path | None, cache: Path, **extra) -> dict:
    """Environment of a subprocess that sees the plugins in ``folder`` (and a private cache)."""
    env = dict(os.environ)
    if folder is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MAXRF_BENCH_CACHE_DIR"] = str(cache)
    env["MAXRF_BENCH_QUIET"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


#: ``maxrf_bench.cli.main`` with a registry of the given plugins only (``LIGHT_PLUGINS``:
#: comma-separated importable modules); everything else is the real command line.
LIGHT_MAIN = textwrap.dedent('''
    import importlib, os, sys
    from maxrf_bench import plugins as P
    reg = P.Registry(load_entry_points=False)
    for name in ["maxrf_bench_plugins.metrics", "maxrf_bench_plugins.bicubic",
                 *[n for n in os.environ.get("LIGHT_PLUGINS", "").split(",") if n]]:
        reg.add(importlib.import_module(name), name.rsplit(".", 1)[-1])
    P._REGISTRY = reg
    from maxrf_bench.cli import main
    main(sys.argv[1:])
''')


def cli_command(*args, light: bool = False) -> list[str]:
    if light:
        return [sys.executable, "-c", LIGHT_MAIN, *map(str, args)]
    return [str(BIN), *map(str, args)]


def run_cli(*args, env=None, light: bool = False, timeout: float = 300, cwd=None):
    return subprocess.run(cli_command(*args, light=light), capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def popen_cli(*args, env=None, light: bool = False, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*args, light=light), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder`` (to prove that a
    command left it as it was)."""
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
