"""Untrusted files (issue 13): weights and checkpoints are never unpickled blindly, scan
attributes are data, outputs stay inside ``--out``, and the report escapes what scans and
plugins say.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.testing import registered_plugin, toy_scene

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("toolkit", "plugins", "datasets", "export") for p in (ROOT / d).rglob("*.py")]


# --- no blind unpickling anywhere ----------------------------------------------------------------

def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call ``name(...)`` (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def test_no_blind_unpickling_in_the_code():
    """torch.load only with weights_only=True; no pickle/joblib/dill loads, no
    np.load(allow_pickle=True), no eval/exec of data."""
    assert len(SOURCES) > 30
    bad = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for args in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                bad.append(f"{rel}: torch.load({args.strip()[:60]}) without weights_only=True")
        for pattern in (r"\bpickle\.loads?\s*\(", r"\bcloudpickle\.", r"\bdill\.", r"\bjoblib\.load",
                        r"allow_pickle\s*=\s*True", r"(?<![.\w])eval\s*\(", r"(?<![.\w])exec\s*\(",
                        r"\byaml\.load\s*\(", r"\bmarshal\.loads?\s*\(", r"\bshelve\.open"):
            for m in re.finditer(pattern, text):
                line = text[:m.start()].count("\n") + 1
                bad.append(f"{rel}:{line}: {m.group(0)}")
    assert not bad, "\n".join(bad)


class _Evil:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _evil_file(path: Path, marker: Path, wrap=None) -> Path:
    torch = pytest.importorskip("torch")
    payload = _Evil(marker) if wrap is None else wrap(_Evil(marker))
    torch.save(payload, path)
    # the payload really is live: a blind load runs it (proved on a copy, then cleaned up)
    probe = path.with_name("probe.pt")
    probe.write_bytes(path.read_bytes())
    torch.load(probe, weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    probe.unlink()
    return path


TINY = dict(pretrain_iterations=12, adversarial_iterations=6, batch_blocks=16, adv_batch_blocks=8,
            batch_size=2, patch_size=16, disc_width=4, disc_warmup=2, threads=1,
            checkpoint_seconds=0.0, atoms=8, layers=2)


def test_malicious_checkpoint_and_weights_are_refused_not_run(tmp_path):
    """A poisoned checkpoint.pt is ignored (training restarts), a poisoned generator.pt is
    retrained (run) or refused with one line (export); the payload never runs."""
    pytest.importorskip("torch")
    marker = tmp_path / "pwned.txt"
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 2, seed=9), title="toy"), tmp_path / "toy.zarr")
    out = tmp_path / "run"
    sets = {"proposed": TINY}
    mb.run_grid(["proposed"], [str(scan)], out=out, sets=sets, metrics=["psnr"])
    cell = mb.find_cell(out, "toy", mb.read_results(out).methods[0])
    first = json.loads((cell / "cell.json").read_text())["metrics"]
    # 1. the cell's checkpoint is poisoned and the cell must be recomputed
    (cell / "cell.json").unlink()
    (cell / "work" / "generator.json").unlink()
    _evil_file(cell / "work" / "checkpoint.pt", marker, wrap=lambda e: {"fingerprint": e})
    mb.run_grid(["proposed"], [str(scan)], out=out, sets=sets, metrics=["psnr"])
    assert not marker.exists()
    assert json.loads((cell / "cell.json").read_text())["metrics"] == first  # retrained alike
    assert not (cell / "work" / "checkpoint.pt").exists()
    # 2. the trained generator is poisoned: export refuses it in one line
    _evil_file(cell / "work" / "generator.pt", marker, wrap=lambda e: {"D": e})
    label = mb.read_results(out).methods[0]  # proposed[...] with the TINY parameters
    res = CliRunner().invoke(cli, ["export", "--run", str(out), "-m", label, "-o", str(tmp_path / "m.onnx")])
    assert not marker.exists()
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.stderr.startswith("Error: cannot load the trained generator") and res.stderr.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()
    # 3. … and a rerun that finds it retrains instead of loading it
    (cell / "cell.json").unlink()
    mb.run_grid(["proposed"], [str(scan)], out=out, sets=sets, metrics=["psnr"])
    assert not marker.exists()
    assert json.loads((cell / "cell.json").read_text())["metrics"] == first


# --- scan attributes are data ------------------------------------------------------------------------

def test_scan_attributes_are_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated.txt"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    attrs = {"title": code, "description": "{{7*7}} ${7*7} `touch x`", "operator": code,
             "scale_note": "eval(" + code + ")", "licence": "<!-- -->"}
    d = toy_scene(32, 3, seed=10)
    scan = mb.make_scan(**d)
    scan.attrs.update(attrs)
    path = mb.save_scan(scan, tmp_path / "attrs.zarr")
    out = tmp_path / "run"
    mb.run_grid(["bicubic"], [str(path)], out=out)
    mb.write_report(out)
    assert not marker.exists()
    seen = mb.load_inputs(out, "attrs").attrs
    assert seen["title"] == code and seen["description"] == attrs["description"]
    assert seen["scale_note"] == attrs["scale_note"]
    assert json.loads(seen["operator"]) == {"name": "blockmean", "scale": 4}  # the runner's own


# --- outputs stay inside --out ---------------------------------------------------------------------

def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


ESCAPING = ["../../escaped_rel", "/tmp/maxrf_escaped_abs", "..", "a/../../b", "<img src=x onerror=alert(1)>"]


def test_element_dataset_and_label_names_cannot_escape(tmp_path):
    """Element names with ../ and absolute paths, store names with odd characters, labels
    with path parameters: every file lands inside the run directory and the report and
    save-maps folders."""
    d = toy_scene(32, len(ESCAPING), seed=11)
    work = tmp_path / "work"
    work.mkdir()
    scan = mb.save_scan(mb.make_scan(maps=d["maps"], rgb=d["rgb"], elements=ESCAPING,
                                     title="<script>alert('title')</script>"),
                        work / "..weird name ;$(touch x).zarr")
    out, report, saved = work / "run", work / "report", work / "saved"

    class PathParam:
        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            def run(inputs, tag: str = "plain"):
                return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")

            register(mb.Method("pathy", run, "<b>bold</b> description", defaults={"tag": "plain"}))

    before = _files(tmp_path)
    with registered_plugin(PathParam(), "pathparam"):
        mb.run_grid(["bicubic", "pathy[tag=../../../../escaped_label]", "pathy[tag=/etc/escaped]",
                     "pathy[tag=..]"], [str(scan)], out=out)
        labels = mb.read_results(out).methods
        assert labels == ["bicubic", "pathy[tag=escaped_label]", "pathy[tag=escaped]", "pathy[tag=..]"]
        mb.write_report(out, report)
        for fmt in ("tiff", "png", "h5"):
            mb.save_maps(out, saved / fmt, method="bicubic", fmt=fmt)
    created = _files(tmp_path) - before
    outside = [p for p in created if not p.startswith(("work/run", "work/report", "work/saved"))]
    assert not outside, outside
    assert not list(Path("/tmp").glob("maxrf_escaped_abs*")) and not list(Path("/etc").glob("escaped*"))
    assert not list(tmp_path.parent.glob("escaped*"))
    # the names themselves are kept as data
    assert [str(e) for e in mb.load_maps(out, "scan", "bicubic")["element"].values] == ESCAPING
    mapping = json.loads((saved / "tiff" / "save-maps.json").read_text())["files_by_element"]
    assert list(mapping) == ESCAPING and all("/" not in v and v not in ("", ".", "..") for v in mapping.values())
    page = report.read_text()
    for text in ("<script>alert", "<img src=x", "<b>bold</b> description"):
        assert text not in page, text
    assert "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    for md in report.parent.glob("report_files/*.md"):  # Markdown passes raw HTML through
        assert "<img src=x" not in md.read_text() and "<script>" not in md.read_text()


def test_dataset_plugins_cannot_register_path_names(tmp_path):
    class Sneaky:
        @mb.hookimpl
        def maxrf_bench_register_datasets(self, register):
            register(mb.Dataset(name="../../sneaky", load=lambda: None, description="escapes"))

    with pytest.raises(mb.PluginError, match="dataset name must be lower-case letters"):
        with registered_plugin(Sneaky(), "sneaky"):
            pass
    # a name that slipped past registration is refused by the runner before anything is written
    from maxrf_bench.runner import check_dataset_name

    for bad in ("../../x", "/tmp/x", "..", ".hidden", "a@b", "a\\b", ""):
        with pytest.raises(mb.ConfigError, match="cannot name a directory of the run"):
            check_dataset_name(bad)
