"""What one cell costs, in seconds and in machine-neutral *sgemm-seconds*, optionally side by
side with another checkout of the project (the commit before a speed change).

    .venv/bin/python tests/benchmarks/bench_cost.py METHOD[,METHOD…] [--datasets sim-demo,…]
        [--crop 256] [--seed 0[,1…]] [--threads 2] [--preset fast] [--ref-tree /path/to/worktree]
        [--repeat 1] [--json out.jsonl] [--operator blockmean|gaussian|scan] [--sigma 0.5]

A METHOD may be a column with parameters (``proposed[kernel=5]``), so that both trees run the
same parameters when a preset changed between them.  Every cell (method × dataset × tree)
runs in its own fresh Python process, interleaved
A, B, A, B… when ``--ref-tree`` is given, so both trees meet the same machine load.  Each
process first measures the machine's single-precision matrix-multiply rate (numpy sgemm,
2048² float32, best of 5, on the cell's thread count) and then the cell (``method.run`` on
the prepared dataset, the host's normalisation, the LR input made by ``--operator`` at scale 4
(block mean by default), PSNR of the raw output against the measured truth).  It prints

* ``s``: the cell's wall time;
* ``sgemm-s``: ``s × GFLOP/s measured ÷ REFERENCE_GFLOPS`` — the time the cell would take on a
  machine whose sgemm runs at the fixed reference rate, so figures from different VMs (or the
  same VM under other load) compare;
* with ``--ref-tree``: the reference tree's PSNR and time, the speed-up of this tree in
  sgemm-seconds (``ref sgemm-s ÷ sgemm-s``) and in plain seconds (``ref s ÷ s``: the two
  agree on an idle machine; under load the per-process sgemm figure is noisy), and the PSNR
  difference (an implementation-only change keeps it within ±0.03 dB).

The speed change of issue 26 item 2 (ssgnet, mmsr, ssr, ssrcu, cs2dips), against the base
commit ``5978099`` checked out beside this tree, at the issue's 512² cell and on the two
PSNR-equality scenes, both seeds::

    git worktree add /tmp/before 5978099      # once
    .venv/bin/python tests/benchmarks/bench_cost.py ssr,ssrcu,mmsr,ssgnet,cs2dips \
        --datasets sim-flowers-crop --crop 512 --seed 0 --threads 2 --ref-tree /tmp/before
    .venv/bin/python tests/benchmarks/bench_cost.py ssr,ssrcu,mmsr,ssgnet,cs2dips \
        --datasets sim-demo,sim-flowers-crop --crop 256 --seed 0,1 --threads 2 \
        --ref-tree /tmp/before

``--ref-tree`` is a checkout of this repository (``git worktree add /tmp/before HEAD~1``); it
is imported through a directory of symbolic links (``maxrf_bench`` → ``TREE/toolkit`` …)
placed first on ``sys.path``, so it needs no install of its own.  Datasets: registered names,
``.zarr`` paths, and ``NAME-crop`` for the central ``--crop``² pixels of ``NAME``.  These are
benchmark scenes: never tune on them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: the fixed reference rate of sgemm-seconds (GFLOP/s): about a 2-core 2020s server VM
REFERENCE_GFLOPS = 100.0
HERE = Path(__file__).resolve().parents[2]
PACKAGES = {"maxrf_bench": "toolkit", "maxrf_bench_plugins": "plugins",
            "maxrf_bench_datasets": "datasets", "maxrf_infer": "export/maxrf_infer"}

# The child: measure sgemm, then one cell; print one JSON line.
CHILD = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
threads, method_name, spec, crop, seed, preset, operator, sigma = sys.argv[1:9]
threads, crop, seed, sigma = int(threads), int(crop), int(seed), float(sigma)
import torch
torch.set_num_threads(threads)
with threadpool_limits(threads):
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = a.T.copy(); a @ b
    best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))
gflops = 2 * 2048 ** 3 / best / 1e9
import maxrf_bench as mb
base = spec[:-5] if spec.endswith("-crop") else spec
name, load, _ = mb.resolve_dataset(base)
scan = load()
if spec.endswith("-crop"):
    h, w = scan.sizes["y"], scan.sizes["x"]
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    scan = scan.isel(y=slice(y0, y0 + crop), x=slice(x0, x0 + crop))
prep = mb.prepare_scan(scan, name=name, scale=4, operator=operator, sigma=sigma)
from maxrf_bench.variants import parse_spec
column = parse_spec(method_name)  # NAME or NAME[key=value]: the same parameters in both trees
method = mb.get_method(column.name)
params = method.params(preset if preset in method.presets else None, dict(column.overrides))
with threadpool_limits(threads):
    t0 = time.perf_counter()
    out = method.run(prep.inputs(seed=seed), **params)
    secs = time.perf_counter() - t0
out = np.asarray(getattr(out, "values", out), np.float64)
psnr = float(-10 * np.log10(((out - prep.truth) ** 2).mean()))
print("RESULT " + json.dumps({"gflops": gflops, "seconds": secs, "psnr": psnr,
                              "tree": str(__import__("pathlib").Path(mb.__file__).resolve().parents[1])}))
"""


def link_tree(tree: Path, into: Path) -> None:
    """A directory whose entries make ``tree`` importable without an install."""
    for pkg, rel in PACKAGES.items():
        src = tree / rel
        if not src.is_dir():
            raise SystemExit(f"--ref-tree {tree}: expected a checkout of maxrf-bench with {rel}/, "
                             f"found none")
        (into / pkg).symlink_to(src, target_is_directory=True)


def run_cell(args, method: str, dataset: str, pythonpath: str | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), method, dataset,
                          str(args.crop), str(args.seed), args.preset, args.operator, str(args.sigma)],
                         env=env, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not lines:
        raise SystemExit(f"{method} on {dataset} failed:\n{res.stderr[-2000:]}")
    return json.loads(lines[-1][7:])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", help="comma-separated method names or columns (proposed[kernel=5])")
    ap.add_argument("--datasets", default="sim-demo,sim-flowers-crop")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", default="0", help="seed, or comma-separated seeds (one cell each)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--operator", default="blockmean", choices=["blockmean", "gaussian", "scan"],
                    help="the degradation operator that makes the LR input (and that methods see)")
    ap.add_argument("--sigma", type=float, default=0.5, help="beam sigma in HR pixels (gaussian, scan)")
    ap.add_argument("--ref-tree", type=Path, help="another checkout to run side by side")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell and tree (median kept)")
    ap.add_argument("--json", help="append one JSON line per cell here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as links:
        ref_path = None
        if args.ref_tree:
            link_tree(args.ref_tree.resolve(), Path(links))
            ref_path = links
        seeds = [int(x) for x in str(args.seed).split(",") if x != ""]
        print(f"reference rate {REFERENCE_GFLOPS:.0f} GFLOP/s; {args.threads} threads; "
              f"preset {args.preset}; seeds {','.join(map(str, seeds))}; operator {args.operator}"
              + (f" (sigma {args.sigma:g} px)" if args.operator != "blockmean" else ""), flush=True)
        head = (f"{'method':10s} {'dataset':18s} {'seed':>4s} {'GFLOP/s':>8s} {'s':>8s} "
                f"{'sgemm-s':>8s} {'PSNR':>7s}")
        if ref_path:
            head += (f" {'ref s':>8s} {'ref sgemm-s':>11s} {'ref PSNR':>8s} {'speed-up':>8s} "
                     f"{'(s)':>6s} {'ΔPSNR':>7s}")
        print(head, flush=True)
        cells = [(m, d, sd) for m in args.methods.split(",") if m
                 for d in args.datasets.split(",") if d for sd in seeds]
        for method, dataset, seed in cells:
            ours, refs = [], []
            cell_args = argparse.Namespace(**{**vars(args), "seed": seed})
            for _ in range(args.repeat):  # interleaved: both trees see the same load
                ours.append(run_cell(cell_args, method, dataset, None))
                if ref_path:
                    refs.append(run_cell(cell_args, method, dataset, ref_path))
            pick = lambda rs: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]  # noqa: E731
            a = pick(ours)
            a_norm = a["seconds"] * a["gflops"] / REFERENCE_GFLOPS
            if refs and refs[0]["tree"] == a["tree"]:
                raise SystemExit(f"--ref-tree resolved to this tree ({a['tree']}): nothing to compare")
            line = (f"{method:10s} {dataset:18s} {seed:4d} {a['gflops']:8.1f} {a['seconds']:8.1f} "
                    f"{a_norm:8.1f} {a['psnr']:7.2f}")
            row = {"method": method, "dataset": dataset, "seed": seed, "threads": args.threads,
                   **a, "sgemm_seconds": a_norm}
            if refs:
                b = pick(refs)
                b_norm = b["seconds"] * b["gflops"] / REFERENCE_GFLOPS
                line += (f" {b['seconds']:8.1f} {b_norm:11.1f} {b['psnr']:8.2f} "
                         f"{b_norm / a_norm:7.2f}× {b['seconds'] / a['seconds']:5.2f}× "
                         f"{a['psnr'] - b['psnr']:+7.3f}")
                row.update(ref=b, ref_sgemm_seconds=b_norm, speedup=b_norm / a_norm)
            print(line, flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
