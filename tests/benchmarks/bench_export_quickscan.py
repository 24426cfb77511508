"""End to end on a real run: export a recorrupt (ctx-quickscan) cell and check that maxrf-infer,
tiled, gives the run's raw maps and, with ``--noise-aware``, its ``+W`` column.

The LR scan the cell saw is rebuilt in counts from the run's saved inputs (under the acquisition
protocol it is the synthesised short scan), exported as a scan with ``maps_lr``, and run through
``maxrf_infer.infer`` (CPU, one thread, 128-pixel tiles).  Prints the recorruption record, the
largest difference relative to the largest map value, and the CPU seconds of each inference.

Run (the column needs its +W twin in the same run for the second line):
  maxrf-bench run -m 'proposed[preset=ctx-quickscan],proposed+W[preset=ctx-quickscan]' \\
      -d isabel-101.zarr --protocol acquisition --scan-times 1/16 --seeds 0 -o RUN
  .venv/bin/python tests/benchmarks/bench_export_quickscan.py RUN isabel-101 \\
      'proposed[kernel=5,projection=False,recorrupt=0.5,register=lr]' acquisition-1_16
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(run: str, dataset: str, label: str, protocol: str = "full") -> None:
    import xarray as xr

    import maxrf_bench as mb
    import maxrf_infer
    from maxrf_bench_plugins import onnx_commands

    run_dir = Path(run)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        inp = mb.load_inputs(run_dir, dataset, protocol)
        off = np.asarray(inp.attrs["offset"], np.float32)[:, None, None]
        span = np.asarray(inp.attrs["span"], np.float32)[:, None, None]
        scan = mb.save_scan(mb.make_scan(maps_lr=(inp["maps_lr"].values * span + off).astype(np.float32),
                                         rgb=inp["rgb"].values, elements=[str(e) for e in inp["element"].values],
                                         title="lr"), out / "lr.zarr")
        model = onnx_commands.export_model(run_dir, out / "q.onnx", dataset=dataset, method=label,
                                           protocol=protocol)
        info = maxrf_infer.read_model_info(model)
        print("recorrupt:", info.recorrupt, "| registration field:", info.photo_field is not None)
        for name, ref_label, kw in (("raw", label, {}),
                                    ("+W", label.replace("proposed[", "proposed+W[", 1), {"noise_aware": True})):
            ref = mb.load_maps(run_dir, dataset, ref_label, protocol=protocol)["maps"].values
            t0 = time.process_time()
            maxrf_infer.infer(model, scan, out / f"{name}.zarr", tile=128, provider="cpu", progress=False,
                              echo=lambda s: None, workers=1, threads=1, **kw)
            cpu = time.process_time() - t0
            with xr.open_zarr(out / f"{name}.zarr") as ds:
                got = ds["maps"].values
            print(f"{name}: max |maxrf-infer − run| / max |run| = {np.abs(got - ref).max() / np.abs(ref).max():.2e}, "
                  f"CPU {cpu:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
