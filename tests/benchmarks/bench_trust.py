"""Maps a conservator can trust (issue 22): the misregistration sweep and the hidden-layer
groups on simulated scans, written into ``docs/trust.md`` (between its ``results`` markers).

    .venv/bin/python tests/benchmarks/bench_trust.py \\
        --scene sim-virgin:0:256 --amplitudes 0,1,2,4 --seeds 0 \\
        --methods 'bicubic+P,guided+P,proposed,proposed[kernel=5]' \\
        --iterations 1000,100 --out /tmp/trust-run --doc docs/trust.md

``--scene PRESET:SEED:SIZE`` (repeatable) simulates the scan (the presets' table scenes are
``PRESET:0:512``); ``--iterations PRE,ADV`` shortens the ``proposed`` schedule (``fast``
otherwise: 5000 + 200), and the page says so.  Finished cells in ``--out`` are reused.
Without ``--doc`` the tables are only printed.  ``--from RUN_DIR`` (repeatable) takes the
tables of finished runs (``maxrf-bench run … --misregister …``) instead of running, with
the command each manifest records.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import maxrf_bench as mb
from maxrf_bench.misregister import parse_amplitudes
from maxrf_bench.trust import run_trust_markdown

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", action="append", default=None, help="PRESET:SEED:SIZE (repeatable)")
    ap.add_argument("--methods", default="bicubic+P,guided+P,proposed,proposed[kernel=5]")
    ap.add_argument("--amplitudes", default="0,1,2,4")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--misregister-seed", type=int, default=0)
    ap.add_argument("--iterations", default=None, help="PRE,ADV iterations of proposed (default: fast)")
    ap.add_argument("--protocol", default="full")
    ap.add_argument("--out", default="/tmp/trust-run")
    ap.add_argument("--doc", default=None)
    ap.add_argument("--from", dest="runs", action="append", default=[], help="finished run directory")
    a = ap.parse_args()
    scenes = a.scene or ["sim-virgin:0:256"]
    amps = parse_amplitudes(a.amplitudes)
    seeds = [int(s) for s in a.seeds.split(",")]
    sets: dict = {}
    if a.iterations:
        pre, adv = (int(v) for v in a.iterations.split(","))
        sets = {"proposed": {"pretrain_iterations": pre, "adversarial_iterations": adv}}
    from maxrf_bench_datasets.simulator import simulate

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    blocks = []
    for run_dir in a.runs:
        import json

        m = json.loads((Path(run_dir) / "manifest.json").read_text())
        text = run_trust_markdown(run_dir)
        print(text)
        secs = sum(t["seconds"] for t in m.get("timings", []))
        blocks.append(f"### {', '.join(m['options']['datasets'])}\n\nCommand: `{' '.join(m['command'])}` "
                      f"(cells: {secs:.0f} s in all on this machine, shared with other jobs).\n\n" + text)
    for scene in ([] if a.runs else scenes):
        preset, seed, size = scene.split(":")
        path = out / f"{preset}-{seed}-{size}.zarr"
        if not path.exists():
            mb.save_scan(simulate(preset, int(seed), size=int(size)), path)
        run_dir = out / f"run-{preset}-{seed}-{size}"
        t0 = time.perf_counter()
        mb.run_grid(_split(a.methods), [str(path)],
                    out=run_dir, seeds=seeds, preset="fast", sets=sets, misregister=amps,
                    misregister_seed=a.misregister_seed, protocols=a.protocol.split(","),
                    metrics=["psnr", "rmse", "photo_leak"],
                    command=["bench_trust.py", *map(str, __import__("sys").argv[1:])])
        text = run_trust_markdown(run_dir)
        print(text)
        blocks.append(f"### `simulate({preset!r}, seed={seed}, size={size})`\n\n"
                      f"{len(seeds)} method seed(s) {seeds}; amplitudes {a.amplitudes} px; "
                      f"displacement seed {a.misregister_seed}; `proposed` schedule "
                      f"{a.iterations or 'fast (5000 + 200)'}; run took "
                      f"{time.perf_counter() - t0:.0f} s on this machine.\n\n" + text)
    if a.doc:
        doc = Path(a.doc)
        page = doc.read_text()
        cmd = "    .venv/bin/python tests/benchmarks/bench_trust.py " + " ".join(
            f"'{v}'" if "[" in v else v for v in __import__("sys").argv[1:])
        body = f"{BEGIN}\nWritten by\n\n{cmd}\n\n" + "\n\n".join(blocks) + f"\n{END}"
        page = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: body, page, flags=re.S)
        mb.atomic_write_text(doc, page)
        print(f"wrote {doc}")


def _split(text: str) -> list[str]:
    from maxrf_bench.variants import split_specs

    return split_specs(text)


if __name__ == "__main__":
    main()
