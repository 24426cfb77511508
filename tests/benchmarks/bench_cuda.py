"""The CUDA paths, measured in one script on a GPU machine in under 10 minutes (issue 14).

    .venv/bin/python tests/benchmarks/bench_cuda.py [--json bench_cuda.json] [--budget-s 540]
    .venv/bin/python tests/benchmarks/bench_cuda.py --device cpu --quick   # smoke test, no GPU

Without a CUDA GPU (``torch.cuda.is_available()`` false) and ``--device cuda`` (the
default) it prints why and exits 0, measuring nothing (and writes ``{"skipped": reason}``
to ``--json``).  With one, every figure is printed with the card's name
(``torch.cuda.get_device_name``) and written to ``--json``:

1. ``proposed`` trained with ``--device cuda`` on ``sim-flowers`` (512², 21 lines,
   simulator seed 0), preset ``fast``: the whole schedule (8000 + 300 iterations), its
   wall time and PSNR.
2. ``maxrf-infer`` throughput of that trained generator, exported to ONNX: provider
   ``cuda`` against ``cpu`` in the same run, on a 2048² × 21 scan (sim-flowers tiled 4 × 4),
   best of two runs each (the first pays session creation), HR MP/s and the ratio; then the
   same scan binned as a short-dwell scan with ``--fuse`` (``+F``, ours), once per provider, and
   its time over the plain command's (the fusion is numpy on the CPU whatever the provider).
3. ``proposed`` with the ``paper`` preset (full-image layout, 1e5 + 5e5 iterations: hours)
   is **not** run to the end: it runs with a bounded number of iterations, each stage's
   count doubled once in turn, and the time per iteration of each stage is the slope
   (``(T(2n) − T(n)) / n``); the printed total is the extrapolation ``fixed + Σ slope ×
   paper count`` (said so next to the figure, with the measured runs).
4. The new protocols (issues 21–22), ``proposed`` ``fast`` and ``ctx`` on sim-flowers at
   256² with a cut schedule (``PROTOCOL_SCHEDULE``; ``--quick``: 64², 4 lines), one grid
   each, every cell's time and PSNR: ``--protocol acquisition`` (scan times 1, 1/4, 1/16, 1/64), ``--protocol
   thinning``, the misregistration sweep (``--misregister 0,2``) and the binned short-dwell
   acquisition (``--acquire dwell``, scan times 1 and 1/16, with ``proposed+F``).
5. The deep baselines that are registered: ``mmsr``, ``cs2dips``, ``ssgnet`` with
   ``fast`` (whole schedule) and ``paper`` (bounded and extrapolated as in 3), and the
   pretrained SISR networks ``car``, ``hat``, ``swin2sr`` (inference only, ``paper``
   preset): with ``--weights-dir`` holding the released files, those are used; otherwise
   real-size architectures with random weights (``bench_sisr.build_checkpoint``; the cost of
   a forward pass does not depend on the values; their PSNR is then meaningless and not
   printed).

Each run records the peak GPU memory torch allocated (``torch.cuda.max_memory_allocated``),
which shows that it ran on the card.  Sections run in the order above; one that would
start after ``--budget-s`` is skipped and listed as such (the sections are bounded so the
default budget is not expected to bind on a current GPU).

``--device cpu --quick`` runs every section on the CPU on tiny inputs (sim-flowers at 64²,
4 elements, a few iterations, the scan tiled 2 × 2) to check the script itself where no GPU
is lent; its figures say nothing about a GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: iteration parameters of the bounded ``paper`` runs: (paper count, bounded count on the
#: GPU, bounded count in --quick); the paper counts are the presets' own
PAPER_ITERATIONS = {
    "proposed": {"pretrain_iterations": (100_000, 100, 3), "adversarial_iterations": (500_000, 100, 3)},
    "cs2dips": {"iterations": (5000, 100, 3)},
    "mmsr": {"epochs": (1000, 20, 2)},
    "ssgnet": {"structure_iterations": (100_000, 200, 2), "epochs": (100, 5, 1)},
}
#: --quick: the ``fast`` schedules cut to a few iterations (CPU smoke test only)
QUICK_FAST = {
    "proposed": {"pretrain_iterations": 30, "adversarial_iterations": 6, "disc_warmup": 2},
    "cs2dips": {"iterations": 5},
    "mmsr": {"epochs": 3},
    "ssgnet": {"structure_iterations": 3, "epochs": 2},
}
TRAINED = ("mmsr", "cs2dips", "ssgnet")
SECTIONS = ("proposed fast", "maxrf-infer", "protocols", "proposed paper", "deep baselines fast",
            "sisr", "deep baselines paper")
#: the schedule of ``proposed`` in the "protocols" section on a GPU: cut from fast's 8000 + 300
#: iterations so that its 16 cells fit the 10-minute call
PROTOCOL_SCHEDULE = {"pretrain_iterations": 1000, "adversarial_iterations": 50}
#: the protocol grids of the "protocols" section: (name, columns, RunConfig settings); the
#: binned short-dwell acquisition with its host fusion ``+F`` (ours) at two scan times
PROTOCOL_GRIDS = (("acquisition", ["proposed"], {"protocols": ["acquisition"], "scan_times": "1,1/4,1/16,1/64"}),
                  ("thinning", ["proposed"], {"protocols": ["thinning"]}),
                  ("misregistration", ["proposed"], {"protocols": ["full"], "misregister": [0.0, 2.0]}),
                  ("acquisition dwell", ["proposed", "proposed+F"],
                   {"protocols": ["acquisition"], "scan_times": "1,1/16", "acquire": "dwell"}))
SISR = ("car", "hat", "swin2sr")
SISR_FILES = {"car": "usn.pth", "hat": "HAT_SRx4_ImageNet-pretrain.pth",
              "swin2sr": "Swin2SR_ClassicalSR_X4_64.pth"}


class Bench:
    def __init__(self, args):
        import torch

        self.args, self.torch = args, torch
        self.cuda = args.device == "cuda"
        self.card = (torch.cuda.get_device_name(0) if self.cuda
                     else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-cuda-"))
        self.deadline = time.monotonic() + args.budget_s
        self.figures: dict = {"card": self.card, "device": args.device, "quick": args.quick,
                              "torch": torch.__version__,
                              "cuda": torch.version.cuda if self.cuda else None,
                              "sections": {}, "skipped": []}

    def say(self, text: str) -> None:
        print(f"[{self.card}] {text}", flush=True)

    # -- one run of a method through the host, as `maxrf-bench run` does it --
    def _runner(self, methods: list[str], scan: str, name: str, preset: str, sets: dict,
                **settings) -> tuple[list, float, Path]:
        """Run ``methods`` on ``scan`` through the host into ``tmp/name``: the cells, the wall
        time and the run directory (GPU peak memory reset first, read by :meth:`_gpu_peak`)."""
        from maxrf_bench.runner import RunConfig, Runner
        from maxrf_bench.variants import parse_spec

        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        out = self.tmp / name
        t = time.perf_counter()
        cells = Runner(RunConfig(list(methods), [scan], out=out, preset=preset,
                                 sets={parse_spec(m).name: sets for m in methods if sets},
                                 device=self.args.device,
                                 metrics=["psnr"], **settings)).run()
        return cells, time.perf_counter() - t, out

    def _gpu_peak(self, rec: dict) -> dict:
        if self.cuda:
            rec["gpu_peak_mib"] = self.torch.cuda.max_memory_allocated() / 2**20
        return rec

    # -- one run of a method through the host, as `maxrf-bench run` does it --
    def run(self, method: str, scan: str, name: str, preset: str, sets: dict) -> dict:
        (cell,), wall, out = self._runner([method], scan, name, preset, sets)
        rec = {"method": method, "preset": preset, "sets": sets, "seconds": cell.seconds,
               "wall_s": wall, "error": cell.error, "run_dir": str(out),
               "label": json.loads((out / "manifest.json").read_text())["timings"][0]["columns"][0]}
        if not cell.error:
            metrics = next(iter(cell.metrics.values()))
            rec["psnr_db"] = metrics["measured"]["psnr"]["all"]
        return self._gpu_peak(rec)

    def grid(self, methods: list[str], scan: str, name: str, preset: str, sets: dict,
             **settings) -> dict:
        """A grid of ``methods`` under a protocol (``settings`` of RunConfig): every cell's
        dataset key (protocol point), time and PSNR, and the grid's wall time."""
        cells, wall, _ = self._runner(methods, scan, name, preset, sets, **settings)
        rec = {"wall_s": wall, "settings": settings, "cells": []}
        for c in cells:
            cell = {"dataset": c.dataset, "protocol": c.protocol, "misregister": c.misregister,
                    "run": c.run_label, "seconds": c.seconds, "error": c.error}
            if not c.error:
                truth = next(iter(c.metrics.values()))
                cell["psnr_db"] = next(iter(truth.values()))["psnr"]["all"]
            rec["cells"].append(cell)
        return self._gpu_peak(rec)

    def line(self, label: str, rec: dict, psnr: bool = True) -> str:
        if rec.get("error"):
            return f"{label}: FAILED: {rec['error']}"
        gpu = f", GPU peak {rec['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in rec else ""
        tail = f", PSNR {rec['psnr_db']:.2f} dB" if psnr and "psnr_db" in rec else ""
        return f"{label}: {rec['seconds']:.1f} s{tail}{gpu}"

    # -- bounded paper runs, extrapolated --
    def extrapolate(self, method: str, scan: str) -> dict:
        counts = PAPER_ITERATIONS[method]
        col = 2 if self.args.quick else 1
        base = {k: v[col] for k, v in counts.items()}
        runs = [self.run(method, scan, f"{method}-paper-base", "paper", dict(base))]
        slopes = {}
        for k in counts:
            doubled = {**base, k: 2 * base[k]}
            runs.append(self.run(method, scan, f"{method}-paper-{k}", "paper", doubled))
            slopes[k] = (runs[-1]["seconds"] - runs[0]["seconds"]) / base[k]
        failed = [r["error"] for r in runs if r.get("error")]
        if failed:
            return {"runs": runs, "error": failed[0]}
        fixed = runs[0]["seconds"] - sum(slopes[k] * base[k] for k in counts)
        total = fixed + sum(max(slopes[k], 0.0) * counts[k][0] for k in counts)
        return {"runs": runs, "seconds_per_iteration": slopes, "fixed_s": fixed,
                "paper_counts": {k: v[0] for k, v in counts.items()},
                "extrapolated_s": total, "extrapolated": True}

    def extrapolation_line(self, method: str, rec: dict) -> str:
        if rec.get("error"):
            return f"{method} paper (bounded): FAILED: {rec['error']}"
        per = ", ".join(f"{k} {1e3 * v:.2f} ms/it" for k, v in rec["seconds_per_iteration"].items())
        counts = ", ".join(f"{k}={v}" for k, v in rec["paper_counts"].items())
        measured = " / ".join(f"{r['seconds']:.1f}" for r in rec["runs"])
        return (f"{method} paper: EXTRAPOLATED {rec['extrapolated_s'] / 60:.1f} min for {counts} "
                f"from bounded runs of {measured} s ({per}; fixed {rec['fixed_s']:.1f} s)")

    def section(self, name: str, func) -> None:
        if time.monotonic() > self.deadline:
            self.figures["skipped"].append(name)
            self.say(f"{name}: skipped (past the --budget-s of {self.args.budget_s:.0f} s)")
            return
        t = time.perf_counter()
        try:
            self.figures["sections"][name] = func()
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            self.figures["sections"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                              "traceback": traceback.format_exc()}
            self.say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        self.say(f"({name}: {time.perf_counter() - t:.0f} s)")


def make_scans(b: Bench) -> tuple[str, str]:
    """sim-flowers (the registered 512² scene; --quick: 64², 4 lines) and the larger scan
    for the throughput test (tiled 4 × 4; --quick 2 × 2), as .zarr paths."""
    import numpy as np

    import maxrf_bench as mb
    from maxrf_bench_datasets.simulator import simulate

    ds = simulate("sim-flowers", seed=0, size=64 if b.args.quick else None)
    if b.args.quick:
        ds = ds.isel(element=slice(0, 4))
    scan = mb.save_scan(ds, b.tmp / "sim-flowers.zarr")
    reps = 2 if b.args.quick else 4
    big = mb.make_scan(maps=np.tile(ds["maps"].values, (1, reps, reps)),
                       rgb=np.tile(ds["rgb"].values, (1, reps, reps)),
                       elements=[str(e) for e in ds["element"].values],
                       title=f"sim-flowers tiled {reps}x{reps} (throughput test)")
    big_path = mb.save_scan(big, b.tmp / "sim-flowers-tiled.zarr")
    return str(scan), str(big_path)


def make_small_scan(b: Bench) -> str:
    """sim-flowers at 256² (--quick: 64², 4 lines) for the protocol grids, as a .zarr path."""
    import maxrf_bench as mb
    from maxrf_bench_datasets.simulator import simulate

    ds = simulate("sim-flowers", seed=0, size=64 if b.args.quick else 256)
    if b.args.quick:
        ds = ds.isel(element=slice(0, 4))
    return str(mb.save_scan(ds, b.tmp / "sim-flowers-256.zarr"))


def sisr_weights(b: Bench, method: str) -> tuple[str, bool]:
    """The released file from --weights-dir, else a random-weight real-size checkpoint."""
    if b.args.weights_dir:
        f = Path(b.args.weights_dir) / SISR_FILES[method]
        if f.is_file():
            return str(f), True
    spec = importlib.util.spec_from_file_location("bench_sisr", HERE / "bench_sisr.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return str(mod.build_checkpoint(method, b.tmp / SISR_FILES[method])), False


def infer_throughput(b: Bench, run_dir: str, label: str, big: str) -> dict:
    import maxrf_infer
    from maxrf_bench_plugins.onnx_commands import export_model

    model = export_model(run_dir, b.tmp / "proposed.onnx", dataset="sim-flowers", method=label)
    out = {}
    for provider in ("cuda", "cpu") if b.cuda else ("cpu",):
        best = None
        for i in range(2):
            res = maxrf_infer.infer(model, big, b.tmp / f"infer-{provider}-{i}.zarr", provider=provider,
                                    progress=False, echo=lambda s: None)
            if best is None or res.seconds < best.seconds:
                best = res
        out[provider] = {"seconds": best.seconds, "hr_mp_per_s": best.megapixels_per_second,
                         "providers": best.providers, "shape": list(best.shape), "tiles": best.tiles}
        b.say(f"maxrf-infer --provider {provider}: {best.megapixels_per_second:.2f} HR MP/s "
              f"({best.shape[0]} elements, {best.shape[1]}×{best.shape[2]}, {best.seconds:.2f} s, "
              f"ran on {', '.join(best.providers)})")
    if "cuda" in out:
        out["cuda_over_cpu"] = out["cuda"]["hr_mp_per_s"] / out["cpu"]["hr_mp_per_s"]
        b.say(f"maxrf-infer cuda / cpu throughput: {out['cuda_over_cpu']:.1f}x")
    # --fuse (+F, ours): the same scan read as a short-dwell scan, binned; the fusion pass is
    # numpy on the CPU whatever the provider, so its share of the command is what a GPU leaves
    import maxrf_bench as mb

    dwell = mb.save_scan(mb.bin_short_dwell(mb.open_scan(big), 4), b.tmp / "tiled-dwell.zarr")
    for provider in ("cuda", "cpu") if b.cuda else ("cpu",):
        res = maxrf_infer.infer(model, dwell, b.tmp / f"infer-fuse-{provider}.zarr", provider=provider,
                                fuse=True, progress=False, echo=lambda s: None)
        out[f"{provider}_fuse"] = {"seconds": res.seconds, "over_plain": res.seconds / out[provider]["seconds"]}
        b.say(f"maxrf-infer --provider {provider} --fuse: {res.seconds:.2f} s, "
              f"{out[f'{provider}_fuse']['over_plain']:.2f}x the plain command")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny inputs, a few iterations (smoke test)")
    ap.add_argument("--json", default=None, help="write the figures here (JSON)")
    ap.add_argument("--budget-s", type=float, default=540.0,
                    help="start no section after this many seconds (default 540: under 10 min)")
    ap.add_argument("--weights-dir", default=None, help="folder with the released SISR weights files")
    ap.add_argument("--only", default=None, help="comma-separated sections to run (default all: "
                    + ", ".join(SECTIONS) + "; maxrf-infer needs proposed fast)")
    args = ap.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        reason = (f"no CUDA GPU here (torch {torch.__version__}, torch.version.cuda="
                  f"{torch.version.cuda}, torch.cuda.is_available() is False): nothing measured; "
                  "run it on a GPU machine, or `--device cpu --quick` to test the script")
        print(f"bench_cuda: skipped: {reason}")
        if args.json:
            Path(args.json).write_text(json.dumps({"skipped": reason}, indent=1))
        return 0
    torch.set_num_threads(max(1, os.cpu_count() or 1) if args.device == "cuda" else 1)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = False  # the runs' own settings, as the host runs them

    import maxrf_bench as mb

    b = Bench(args)
    b.say(f"torch {torch.__version__}, CUDA {b.figures['cuda']}; work in {b.tmp}"
          + ("; --quick: a smoke test of the script, not GPU figures" if args.quick else ""))
    scan, big = make_scans(b)
    registered = set(mb.get_methods())
    state: dict = {}

    def proposed_fast():
        sets = QUICK_FAST["proposed"] if args.quick else {}
        rec = b.run("proposed", scan, "proposed-fast", "fast", sets)
        state["proposed_run"] = rec["run_dir"], rec["label"]
        b.say(b.line("proposed fast (whole schedule" + (", --quick: cut" if args.quick else "")
                     + ")", rec))
        return rec

    def infer():
        if "proposed_run" not in state or b.figures["sections"]["proposed fast"].get("error"):
            raise RuntimeError("needs the trained proposed generator of 'proposed fast'")
        return infer_throughput(b, *state["proposed_run"], big)

    def protocols():
        """proposed fast and ctx under the acquisition (coarse and binned short dwell), thinning
        and misregistration protocols."""
        small = make_small_scan(b)
        sets = QUICK_FAST["proposed"] if args.quick else dict(PROTOCOL_SCHEDULE)
        out = {"schedule": sets}
        b.say(f"protocols: proposed with {sets} (a cut schedule: time per cell and the protocols' "
              "PSNR trend, not the presets' final PSNR)")
        for name, columns, settings in PROTOCOL_GRIDS:
            for preset in ("fast", "ctx"):
                key = f"{name} {preset}"
                if time.monotonic() > b.deadline:
                    b.figures["skipped"].append(f"protocols: {key}")
                    b.say(f"{key}: skipped (past the --budget-s of {args.budget_s:.0f} s)")
                    continue
                out[key] = rec = b.grid(columns, small, f"protocol-{name.replace(' ', '-')}-{preset}",
                                        preset, sets, **settings)
                for c in rec["cells"]:
                    where = f"{c['dataset']} {c['protocol']}" + (f" ~{c['misregister']:g} px"
                                                                 if c["misregister"] else "")
                    b.say(f"{key}: {where}: " + (f"FAILED: {c['error']}" if c["error"] else
                          f"{c['seconds']:.1f} s, PSNR {c.get('psnr_db', float('nan')):.2f} dB"))
                b.say(f"{key}: grid {rec['wall_s']:.1f} s" + (f", GPU peak {rec['gpu_peak_mib']:.0f} MiB"
                                                              if "gpu_peak_mib" in rec else ""))
                if any(c["error"] for c in rec["cells"]):
                    rec["error"] = next(c["error"] for c in rec["cells"] if c["error"])
        return out

    def proposed_paper():
        rec = b.extrapolate("proposed", scan)
        b.say(b.extrapolation_line("proposed", rec))
        return rec

    def baselines_fast():
        out = {}
        for m in TRAINED:
            if m not in registered:
                out[m] = {"error": "not registered here"}
                b.say(f"{m}: not registered here (skipped)")
                continue
            out[m] = b.run(m, scan, f"{m}-fast", "fast", QUICK_FAST[m] if args.quick else {})
            b.say(b.line(f"{m} fast (whole schedule" + (", --quick: cut" if args.quick else "") + ")",
                         out[m]))
        return out

    def sisr():
        out = {}
        for m in SISR:
            if m not in registered:
                out[m] = {"error": "not registered here"}
                b.say(f"{m}: not registered here (skipped)")
                continue
            weights, released = sisr_weights(b, m)
            out[m] = b.run(m, scan, f"{m}-paper", "paper", {"weights": weights})
            out[m]["weights"] = "released file" if released else "random weights (real-size architecture)"
            b.say(b.line(f"{m} paper, inference ({out[m]['weights']})", out[m], psnr=released))
        return out

    def baselines_paper():
        out = {}
        for m in TRAINED:
            if m not in registered:
                continue
            out[m] = b.extrapolate(m, scan)
            b.say(b.extrapolation_line(m, out[m]))
        return out

    funcs = dict(zip(SECTIONS, (proposed_fast, infer, protocols, proposed_paper, baselines_fast,
                                sisr, baselines_paper)))
    wanted = SECTIONS if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in wanted if s not in funcs]
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    for name in SECTIONS:
        if name in wanted:
            b.section(name, funcs[name])
    if args.json:
        Path(args.json).write_text(json.dumps(b.figures, indent=1, default=str))
        b.say(f"figures: {args.json}")
    failed = [n for n, sec in b.figures["sections"].items() if _failed(sec)]
    if failed:
        b.say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def _failed(record) -> bool:
    """A section failed, or one of its runs did (a method not registered here is no failure)."""
    if not isinstance(record, dict):
        return False
    if record.get("error") and record["error"] != "not registered here":
        return True
    return any(_failed(v) for k, v in record.items() if k != "error")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
