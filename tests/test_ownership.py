"""Issue 25: the ownership rule of the one directory-level atomic write, its sweep of stale
temporaries, OS errors about the output location, and names that cannot be file names."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.testing import toy_scene
from maxrf_infer import atomic as rt

from reliability_support import tree_state


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _stale(path: Path, pid: int | None = None) -> Path:
    """A temporary that a killed writer of ``path`` left beside it."""
    name = f".{path.name}.tmp-0badc0de" if pid is None else \
        f".{path.name}.tmp-0badc0de-{rt._host_tag()}-{pid}"
    stale = path.with_name(name)
    stale.mkdir()
    (stale / "half").write_bytes(b"half-written")
    return stale


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 3, seed=2), title="toy"), root / "toy.zarr")
    mb.run_grid(["bicubic"], [str(scan)], out=root / "run", metrics=["psnr"])
    return root / "run"


def test_write_dir_replaces_only_its_own_kind(tmp_path):
    owned = lambda p: (p / "MINE").is_file()  # noqa: E731

    def fill(tmp):
        (tmp / "MINE").write_text("x")
        (tmp / "data").write_text("new")

    out = tmp_path / "out"
    rt.write_dir(out, fill, kind="test output", owned=owned)
    assert (out / "data").read_text() == "new"
    (out / "data").write_text("old")
    rt.write_dir(out, fill, kind="test output", owned=owned)  # ours: replaced
    assert (out / "data").read_text() == "new"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes").write_text("mine")
    before = tree_state(user)
    with pytest.raises(rt.OutputError, match="exists and is not a test output this tool wrote"):
        rt.write_dir(user, fill, kind="test output", owned=owned)
    assert tree_state(user) == before
    with pytest.raises(rt.OutputError, match="holds the input"):
        rt.write_dir(tmp_path, fill, kind="test output", owned=owned, inputs=[user / "notes"])
    with pytest.raises(rt.OutputError, match="is the input"):
        rt.write_dir(out, fill, kind="test output", owned=owned, inputs=[out])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_failure_leaves_the_old_output_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    rt.write_dir(out, lambda t: (t / "MINE").write_text("v1"), kind="k", owned=lambda p: True)

    def boom(tmp):
        (tmp / "MINE").write_text("v2")
        raise RuntimeError("fails half-way")

    with pytest.raises(RuntimeError):
        rt.write_dir(out, boom, kind="k", owned=lambda p: True)
    assert (out / "MINE").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sweep_removes_dead_writers_temporaries_only(tmp_path):
    out = tmp_path / "out"
    dead_old, dead_new = _stale(out), _stale(out, _dead_pid())
    alive = _stale(out, os.getppid())  # a writer that still runs: left alone
    other = tmp_path / ".other.tmp-0badc0de"  # another output's temporary: not ours to sweep
    other.mkdir()
    rt.write_dir(out, lambda t: (t / "x").write_text("1"), kind="k")
    assert not dead_old.exists() and not dead_new.exists()
    assert alive.exists() and other.exists()


@pytest.mark.parametrize("writer", ["save-maps", "report", "scan", "infer-store"])
def test_every_writer_sweeps_its_stale_temporaries(writer, run_dir, tmp_path):
    if writer == "save-maps":
        out = tmp_path / "maps"
        do = lambda: mb.save_maps(run_dir, out, method="bicubic")  # noqa: E731
    elif writer == "report":
        out = tmp_path / "r_files"
        do = lambda: mb.write_report(run_dir, tmp_path / "r.html")  # noqa: E731
    elif writer == "scan":
        out = tmp_path / "s.zarr"
        do = lambda: mb.save_scan(mb.make_scan(**toy_scene(16, 2)), out)  # noqa: E731
    else:
        out = tmp_path / "z.zarr"
        ds = xr.Dataset({"maps": (("element", "y", "x"), np.ones((1, 4, 4), np.float32))},
                        attrs={"producer": "maxrf-infer"})
        do = lambda: mb.write_zarr_atomic(ds, out)  # noqa: E731
    stale = [_stale(out), _stale(out, _dead_pid())]
    page_tmp = None
    if writer == "report":  # the page's own temporary (a file) too
        page_tmp = tmp_path / ".r.html.tmp-0badc0de"
        page_tmp.write_text("<html>half")
    do()
    assert out.exists() and not any(p.exists() for p in stale)
    assert page_tmp is None or not page_tmp.exists()
    do()  # and the second run replaces its own output
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_os_errors_about_the_output_are_user_errors(code, monkeypatch, tmp_path):
    """No space, a read-only file system (root ignores permissions, so simulated): exit 2,
    one line, nothing written, no temporary left."""
    def full(self, store, *a, **k):
        Path(store, "partial").write_bytes(b"x")
        raise OSError(code, os.strerror(code), str(store))

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    out = tmp_path / "sim.zarr"
    res = CliRunner().invoke(cli, ["simulate", "--size", "32", "-o", str(out)])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: cannot write the scan store")
    assert os.strerror(code) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_run_on_a_full_disk_is_a_user_error(monkeypatch, run_dir, tmp_path):
    from maxrf_bench import rundir as rundir_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "o" / "results.csv"))

    monkeypatch.setattr(rundir_mod, "atomic_write_text", full)
    scan = next(run_dir.parent.glob("toy.zarr"))
    res = CliRunner().invoke(cli, ["run", "-q", "-m", "bicubic", "-d", str(scan), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.stderr.strip().splitlines() == [
        f"Error: cannot write {str(tmp_path / 'o' / 'results.csv')!r}: no space is left on the device "
        "(No space left on device); expected a writable location with free space and names the "
        "file system accepts"]


def test_element_names_that_cannot_be_file_names(tmp_path):
    """Names too long for a file name, or with separators: safe, bounded, unique file names
    in the report, save-maps and cells; the run finishes (exit 0)."""
    d = toy_scene(32, 3, seed=3)
    names = ["P" * 300, "P" * 299 + "Q", "Pb/L ../x"]
    scan = mb.save_scan(mb.make_scan(rgb=d["rgb"], maps=d["maps"], elements=names), tmp_path / "n.zarr")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "-q", "-m", "bicubic", "-d", str(scan), "-o", str(out),
                                   "--metrics", "psnr"])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()
    files = [p for p in out.rglob("*")]
    assert max(len(p.name.encode()) for p in files) <= 255
    paths = mb.save_maps(out, tmp_path / "maps", method="bicubic")
    stems = [p.stem for p in paths if p.suffix == ".tif"]
    assert len(set(stems)) == 3 and all(len(s.encode()) <= rt_stem_max() for s in stems)
    assert all("/" not in s and not s.startswith(".") for s in stems)


def rt_stem_max() -> int:
    from maxrf_bench.atomic import STEM_MAX_BYTES

    return STEM_MAX_BYTES
