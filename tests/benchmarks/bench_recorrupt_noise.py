"""Old (torch.Generator) against new (counter-based, ``maxrf_infer.recorrupt``) inference noise
of trained ``recorrupt > 0`` cells: the same generator, only the 8 inference draws redrawn.

For each finished cell of a ``proposed[...,recorrupt=α]`` column: the run's inputs are rebuilt
from its run directory, the generator loaded from the cell's ``work/``, the recorrupted
average computed with the draws the code used before session 9 (``train.lr_recorruption``,
index ``−1 − k``; checked against the stored raw maps) and with today's, and both scored raw
and ``+W`` against the noise-free truth (PSNR, whole cube, dB) as the runner scores.

Run:  .venv/bin/python tests/benchmarks/bench_recorrupt_noise.py RUN/cells/KEY/LABEL/seed-N ...
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def compare(cell: Path) -> dict:
    import torch

    from maxrf_bench import rundir
    from maxrf_bench.scoring import score_variants
    from maxrf_bench_plugins.proposed.method import recorrupt_std, recorrupted_inference, super_resolve
    from maxrf_bench_plugins.proposed.model import load_generator
    from maxrf_bench_plugins.proposed.train import RECORRUPT_DRAWS, lr_recorruption

    t0 = time.process_time()
    meta = json.loads((cell / "cell.json").read_text())
    key, seed = cell.parent.parent.name, int(meta["seed"])
    prep = rundir.load_prepared(cell.parents[3], key)
    g, gmeta = load_generator(cell / "work")
    p = gmeta["params"]
    if gmeta.get("training", {}).get("register_field_lr") is not None:
        raise SystemExit(f"{cell}: a register=lr cell; this comparison takes the photograph as given")
    lr = np.asarray(prep.maps_lr.values, np.float32)
    rgb = np.asarray(prep.rgb.values, np.float32)
    sigma = recorrupt_std(p, prep.inputs(seed=seed), lr)
    a = float(p["recorrupt"])
    acc = np.zeros((lr.shape[0],) + rgb.shape[-2:], np.float64)
    with torch.no_grad():
        for k in range(RECORRUPT_DRAWS):  # the draws before session 9
            z = lr_recorruption(lr.shape, sigma, seed, -1 - k, "cpu").numpy()
            acc += super_resolve(g, lr + a * z, rgb, prep.operator, project=False)
    old = (acc / RECORRUPT_DRAWS).astype(np.float32)
    if p["projection"]:
        old = np.asarray(prep.operator.project(old, lr), np.float32)
    stored = np.asarray(getattr(rundir.read_raw(cell), "values", rundir.read_raw(cell)), np.float32)
    new = recorrupted_inference(g, lr, rgb, prep.operator, a, seed, bool(p["projection"]), 4096, sigma)
    row = {"cell": f"{key} seed {seed}", "old_vs_stored_max_abs": float(np.abs(old - stored).max())}
    for name, sr in (("old", old), ("new", new)):
        m = score_variants(sr, prep, ["", "W"], ["psnr"])
        row[name] = {v or "raw": round(m[v]["clean"]["psnr"]["all"], 3) for v in ("", "W")}
    row["cpu_s"] = round(time.process_time() - t0, 1)
    return row


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    for cell in argv:
        print(json.dumps(compare(Path(cell))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
