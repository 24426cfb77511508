"""What registering the photograph does on the real ``miniature`` scan.

For each registration model (none, shift, similarity, affine): the estimate, the
gradient-magnitude correlation of photograph and maps, and the PSNR of the RGB-guided
methods given on the command line (default: guided) against bicubic, ×4 block-mean.

    .venv/bin/python tests/benchmarks/bench_registration.py [guided,cms]

Needs ../shared/data/alma_miniature (or $MAXRF_SHARED_DATA).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import maxrf_bench as mb
from maxrf_bench_datasets import real
from maxrf_bench_datasets.registration import estimate_offset, resample_photo


def main(methods: list[str]) -> None:
    if not (real.shared_data_dir() / "alma_miniature").exists():
        sys.exit(f"no alma_miniature under {real.shared_data_dir()}")
    base = real.load_miniature(register=False)
    from PIL import Image

    folder = real.shared_data_dir() / "alma_miniature"
    with np.load(folder / "maps_scalar.npz") as z:
        maps = np.stack([z["As-KB"], z["Cu"]]).astype(np.float32)
        valid = z["valid_mask"]
    photo = np.asarray(Image.open(folder / "VIS_hr.jpg").convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    on_grid = resample_photo(photo, maps.shape[1:])
    crop = (slice(None), real.MINIATURE_ROWS, real.MINIATURE_COLS)
    with tempfile.TemporaryDirectory(prefix="bench-reg-") as tmp:
        paths = []
        for model in ("none", "shift", "similarity", "affine"):
            t0 = time.perf_counter()
            if model == "none":
                offset, matrix, desc = (0.0, 0.0), None, "no registration"
            else:
                reg = estimate_offset(maps, on_grid, mask=valid, model=model)
                offset, matrix, desc = reg.offset, reg.matrix, reg.describe()
            rgb = resample_photo(photo, maps.shape[1:], offset=offset, matrix=matrix)[crop]
            print(f"{model:10s} {time.perf_counter() - t0:5.1f} s  {desc}")
            scan = base.copy()
            scan["rgb"] = (("band", "y", "x"), rgb)
            p = Path(tmp) / f"mini_{model}.zarr"
            mb.save_scan(scan, p)
            paths.append(str(p))
        res = mb.run_grid(["bicubic", *methods], paths, out=Path(tmp) / "run")
        print(f"\n{'model':12s}" + "".join(f"{m:>10s}" for m in ["bicubic", *methods]) + "   (PSNR dB, x4)")
        for p in paths:
            name = Path(p).name.split(".")[0]
            print(f"{name:12s}" + "".join(f"{res.value(name, m, 'psnr'):10.2f}" for m in ["bicubic", *methods]))


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else ["guided"])
