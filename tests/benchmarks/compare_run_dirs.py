"""Compare two run directories of the same grid, run by two versions of the code, byte for
byte apart from timings, timestamps, the host, the git commit and dask worker addresses.

    python tests/benchmarks/compare_run_dirs.py BEFORE AFTER \\
        [--before-path DIR_ON_PYTHONPATH] [--after-path DIR_ON_PYTHONPATH]

Compared: ``results.csv`` (the values of the ``seconds`` rows masked), ``manifest.json``
and every ``cell.json`` (timings, timestamps, host, commit, workers and the ``--out`` path
of the command masked, then dumped as written), every Zarr store
(``xarray.Dataset.identical``, attributes naming seconds left out: the simulator records
its own run time in the scan), and what each version renders
from a *normalised* copy of its run directory (timings set to 0, at one and the same path):
``maxrf-bench table`` (``--truth measured|all``, ``--by-method``) and ``maxrf-bench report``
(the HTML with its ``written`` time masked, and every file of ``report_files/``).  Each
version renders with its own code (``--before-path``/``--after-path`` go first on
``PYTHONPATH``).  Prints one line per difference; exit 1 when there is one.
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MASK = "<masked>"


def _mask_manifest(m: dict, run_dir: Path) -> dict:
    m["command"] = [MASK if a == str(run_dir) else a for a in m.get("command", [])]
    for k in ("started", "finished", "host", "git_commit"):
        if k in m:
            m[k] = MASK
    for t in m.get("timings", []):
        t["seconds"] = MASK
        if t.get("worker"):
            t["worker"] = MASK
    if "cluster" in m:
        m["cluster"] = {"scheduler": m["cluster"].get("scheduler"),
                        "workers": MASK if m["cluster"].get("workers") else {}}
    return m


def _mask_cell(m: dict) -> dict:
    m["seconds"] = MASK
    if m.get("worker"):
        m["worker"] = MASK
    return m


def _results(path: Path, zero: bool = False) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    for r in rows[1:]:
        if r[6] == "seconds":
            r[7] = "0.0" if zero else MASK
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _diff(name: str, a: str | bytes, b: str | bytes, problems: list[str]) -> None:
    if a == b:
        return
    if isinstance(a, bytes) or isinstance(b, bytes):
        problems.append(f"{name}: bytes differ ({len(a)} vs {len(b)} bytes)")
        return
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=0))
    problems.append(f"{name}: differs\n" + "\n".join(lines[:40]))


def _normalised_copy(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report.html", "report_files"))
    (dst / "results.csv").write_text(_results(src / "results.csv", zero=True))
    m = json.loads((src / "manifest.json").read_text())
    m["command"] = ["DIR" if a == str(src) else a for a in m.get("command", [])]
    for k in ("started", "finished"):
        m[k] = "2000-01-01T00:00:00+0000"
    m["host"] = {"hostname": "h"}
    m["git_commit"] = "c"
    for t in m.get("timings", []):
        t["seconds"] = 0.0
        if t.get("worker"):
            t["worker"] = "w"
    if "cluster" in m:
        m["cluster"] = {"scheduler": m["cluster"].get("scheduler"), "workers": {}}
    (dst / "manifest.json").write_text(json.dumps(m, indent=1, default=str))


def _render(run: Path, out: Path, pythonpath: str | None) -> dict[str, str | bytes]:
    env = dict(os.environ, MAXRF_BENCH_QUIET="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    exe = [sys.executable, "-c", "import sys; from maxrf_bench.cli import main; sys.exit(main())"]
    got: dict[str, str | bytes] = {}
    for name, args in (("table", ["table", str(run)]), ("table --truth all", ["table", str(run), "--truth", "all"]),
                       ("table --by-method", ["table", str(run), "--by-method"])):
        res = subprocess.run([*exe, *args], capture_output=True, text=True, env=env)
        got[name] = f"rc={res.returncode}\n{res.stdout}{res.stderr}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = subprocess.run([*exe, "report", str(run), "-o", str(out / "report.html")], capture_output=True,
                         text=True, env=env)
    got["report rc"] = f"rc={res.returncode}\n{res.stderr}"
    if (out / "report.html").exists():
        got["report.html"] = re.sub(r"written \d{4}-\d\d-\d\d \d\d:\d\d", "written <time>",
                                    (out / "report.html").read_text())
        for f in sorted((out / "report_files").iterdir()):
            got[f"report_files/{f.name}"] = f.read_bytes()
    return got


def compare(before: Path, after: Path, before_path: str | None, after_path: str | None) -> list[str]:
    import xarray as xr

    problems: list[str] = []
    _diff("results.csv", _results(before / "results.csv"), _results(after / "results.csv"), problems)
    dump = lambda m: json.dumps(m, indent=1, default=str)  # noqa: E731
    _diff("manifest.json", dump(_mask_manifest(json.loads((before / "manifest.json").read_text()), before)),
          dump(_mask_manifest(json.loads((after / "manifest.json").read_text()), after)), problems)
    files_a = sorted(p.relative_to(before) for p in before.rglob("*") if "report_files" not in p.parts)
    files_b = sorted(p.relative_to(after) for p in after.rglob("*") if "report_files" not in p.parts)
    if [str(p) for p in files_a if not p.name.startswith(".lock")] != \
            [str(p) for p in files_b if not p.name.startswith(".lock")]:
        _diff("file list", "\n".join(map(str, files_a)), "\n".join(map(str, files_b)), problems)
    n_cells = n_stores = 0
    for rel in files_a:
        a, b = before / rel, after / rel
        if rel.name == "cell.json" and b.exists():
            n_cells += 1
            _diff(str(rel), dump(_mask_cell(json.loads(a.read_text()))),
                  dump(_mask_cell(json.loads(b.read_text()))), problems)
        elif rel.suffix == ".zarr" and b.exists():
            n_stores += 1
            with xr.open_zarr(a) as da, xr.open_zarr(b) as db:
                da, db = da.load(), db.load()
                for d in (da, db):  # timings of a dataset plugin (the simulator's seconds)
                    d.attrs = {k: v for k, v in d.attrs.items() if "seconds" not in k}
                if not da.identical(db):
                    problems.append(f"{rel}: the stores differ")
    with tempfile.TemporaryDirectory(prefix="compare-run-dirs-") as tmp:
        run, out = Path(tmp) / "run", Path(tmp) / "out"
        _normalised_copy(before, run)
        ra = _render(run, out, before_path)
        _normalised_copy(after, run)
        rb = _render(run, out, after_path)
    for name in sorted(set(ra) | set(rb)):
        _diff(name, ra.get(name, "(missing)"), rb.get(name, "(missing)"), problems)
    print(f"{before} vs {after}: {n_cells} cell records, {n_stores} Zarr stores, "
          f"{len(ra)} rendered outputs compared; {len(problems)} differences")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--before-path", default=None)
    ap.add_argument("--after-path", default=None)
    args = ap.parse_args(argv)
    problems = compare(args.before, args.after, args.before_path, args.after_path)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
