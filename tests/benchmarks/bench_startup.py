"""Start-up time of the CLI: the plugin catalogue cache against importing every plugin.

Benchmark, not a test.  For ``maxrf-bench --help`` and ``maxrf-bench list methods`` it
measures, side by side in one run, the wall time of

* **eager**: ``MAXRF_BENCH_EAGER_PLUGINS=1``, every plugin imported at start-up (the
  start-up before the cache; the CLI then also imported the whole API eagerly);
* **cold**: the cache is empty (first start after a plugin was installed or edited): every
  plugin is imported once and the cache written;
* **warm**: the cache is valid (every later start): no plugin is imported.

Each is the median of ``--repeat`` runs (default 5) in fresh processes.  Prints the
ratio eager / warm and whether warm starts stay under the 1 s target.  Run it under the
CPU lock on a shared machine::

    flock /tmp/maxrf-cpu.lock .venv/bin/python tests/benchmarks/bench_startup.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "maxrf-bench"
COMMANDS = {"--help": ["--help"], "list methods": ["list", "methods"]}


def timed(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"maxrf-bench {' '.join(args)} failed: {res.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="maxrf-startup-cache-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAXRF_BENCH_")}
    base["MAXRF_BENCH_CACHE_DIR"] = str(cache)
    rows = []
    try:
        for name, args in COMMANDS.items():
            eager, cold, warm = [], [], []
            for _ in range(opts.repeat):  # interleaved, so load changes hit all three alike
                eager.append(timed(args, {**base, "MAXRF_BENCH_EAGER_PLUGINS": "1"}))
                shutil.rmtree(cache, ignore_errors=True)
                cold.append(timed(args, base))
                warm.append(timed(args, base))
            rows.append((name, statistics.median(eager), statistics.median(cold), statistics.median(warm)))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"maxrf-bench start-up, median of {opts.repeat} fresh processes ({os.cpu_count()} CPUs)")
    print(f"{'command':<14}{'eager (s)':>11}{'cold (s)':>10}{'warm (s)':>10}{'eager/warm':>12}  warm < 1 s")
    for name, e, c, w in rows:
        print(f"{name:<14}{e:>11.2f}{c:>10.2f}{w:>10.2f}{e / w:>11.1f}×  {'yes' if w < 1.0 else 'NO'}")


if __name__ == "__main__":
    main()
