"""The HTML report: one self-contained page, the paper's tables and figures, escaped input,
and a real headless Chromium that opens it with no network."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench import report as rep
from maxrf_bench.testing import registered_plugin, toy_scene

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
EVIL = "<script>alert('x')</script> & \"quoted\""


class Jitter:
    """A seed-dependent method: bilinear upsampling plus a little seeded noise."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs, amount: float = 0.02):
            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
            rng = np.random.default_rng(inputs.seed)
            return (up + amount * rng.standard_normal(up.shape)).astype(np.float32)

        register(mb.Method("jitter-test", run, "bilinear plus seeded noise", defaults={"amount": 0.02},
                           deterministic=False))


def _scans(tmp: Path) -> tuple[Path, Path]:
    scene = toy_scene(32, elements=4, seed=3)
    clean = scene["maps"]
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float32)
    truth_scan = mb.make_scan(maps=noisy, maps_clean=clean, rgb=scene["rgb"], elements=scene["elements"],
                              title=EVIL, pixel_size_mm=0.25)
    lr = clean.reshape(4, 8, 4, 8, 4).mean(axis=(2, 4))
    lr_scan = mb.make_scan(maps_lr=lr, rgb=scene["rgb"], elements=scene["elements"], title="no truth")
    return (mb.save_scan(truth_scan, tmp / "toy.zarr"), mb.save_scan(lr_scan, tmp / "lronly.zarr"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    toy, lronly = _scans(tmp)
    with registered_plugin(Jitter(), "jitter"):
        mb.run_grid(["bicubic", "bicubic+P", "jitter-test"], [str(toy), str(lronly)], out=tmp / "run",
                    seeds=[0, 1, 2])
    return tmp / "run"


@pytest.fixture(scope="module")
def page(run_dir):
    path = rep.write_report(run_dir)
    return path, path.read_text()


def _imgs(text: str) -> list[str]:
    return re.findall(r"<img src='([^']*)'", text)


def test_page_is_self_contained(page, run_dir):
    path, text = page
    assert path == run_dir / "report.html"
    srcs = _imgs(text)
    assert len(srcs) == 2  # Fig. 2 of each dataset
    from PIL import Image

    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.size[0] > 400
    # no external requests: no URL schemes, no script, no link/iframe elements
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", text)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "<iframe" not in text.lower()
    # moving the page keeps it whole
    moved = run_dir.parent / "elsewhere" / "r.html"
    moved.parent.mkdir(exist_ok=True)
    shutil.copy(path, moved)
    assert _imgs(moved.read_text()) == srcs


def test_scan_strings_are_escaped(page):
    _, text = page
    assert "alert(&#x27;x&#x27;)" in text and "&lt;script&gt;" in text
    assert EVIL not in text


def test_table_marks_best_and_second_with_spread(page, run_dir):
    _, text = page
    results = mb.read_results(run_dir)
    summ = results.summary("psnr", truth="measured")
    labels = results.methods
    means = [summ[("toy", lab)].mean for lab in labels]
    stds = [summ[("toy", lab)].std for lab in labels]
    from maxrf_bench.table import rank

    ranks = rank(means, stds, True)
    # the first table is Table I on the measured truth; its toy PSNR row
    first = text.split("<p class='caption'>", 2)[1]
    row = next(r for r in first.split("<tr") if ">PSNR<" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert len(cells) == len(labels)
    for cell, r in zip(cells, ranks):
        assert cell.startswith("<b>") == (r == 1)
        assert cell.startswith("<u>") == (r == 2)
    jitter = cells[labels.index("jitter-test")]
    assert "±" in jitter and summ[("toy", "jitter-test")].n == 3
    assert "noise ceiling of toy" in text.lower()
    ceiling = mb.noise_ceiling(run_dir, "toy")
    assert f"{ceiling:.2f} dB" in text
    # other metrics exist but are behind the toggle
    assert "<tr class='extra'>" in first and "class='toggle'" in first
    assert "against the clean truth" in text


def test_figures_beside_and_markdown(page, run_dir):
    path, _ = page
    files = sorted(p.name for p in (run_dir / "report_files").iterdir())
    assert any(f.startswith("fig2-toy-") and f.endswith(".png") for f in files)
    assert any(f.startswith("fig2-lronly-") for f in files)
    assert {"table1-full-measured.md", "table1-full-clean.md", "elements-toy-measured.md"} <= set(files)
    md = (run_dir / "report_files" / "table1-full-measured.md").read_text()
    assert "| Dataset | Metric |" in md and "**" in md and "±" in md


def test_default_element_is_the_most_structured():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    stripes = ((xx // 3) % 2).astype(float)  # fine detail, lost at 4x
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 400.0)  # smooth: survives 4x
    noise = rng.random((64, 64))  # all noise, no structure
    maps = np.stack([blob, noise, stripes * 0.8 + 0.1])
    assert rep.default_element(maps, 4, clean=True) == 2
    # with a measured (noisy) truth, pure noise must not win over structure
    noisy = np.clip(maps + 0.15 * rng.standard_normal(maps.shape), 0, None)
    noisy = noisy / noisy.max(axis=(1, 2), keepdims=True)
    assert rep.default_element(noisy, 4, clean=False) == 2
    assert rep.structure_score(noise, 4, clean=False) < 0.2 * rep.structure_score(noisy[2], 4, clean=False)


def test_element_and_crop_options(run_dir, tmp_path):
    out = rep.write_report(run_dir, tmp_path / "r.html", element="Cu_K", crop="4:20,8:28", assets=True)
    names = [p.name for p in (tmp_path / "r_files").iterdir()]
    assert "fig2-toy-Cu_K.png" in names
    from PIL import Image

    full = Image.open(run_dir / "report_files" / next(n for n in os.listdir(run_dir / "report_files")
                                                      if n.startswith("fig2-toy")))
    cropped = Image.open(tmp_path / "r_files" / "fig2-toy-Cu_K.png")
    assert cropped.size != full.size  # a 16×20 window draws differently shaped panels
    assert "crop y 4:20, x 8:28" not in out.read_text()  # the crop is in the figure, not the page text
    with pytest.raises(mb.ConfigError, match="in no dataset of the run; expected one of: Ca_K"):
        rep.write_report(run_dir, tmp_path / "x.html", element="Zz_K")
    with pytest.raises(mb.ConfigError, match="y0:y1,x0:x1"):
        rep.write_report(run_dir, tmp_path / "x.html", crop="4-20")
    with pytest.raises(mb.ConfigError, match="reaches outside"):
        rep.write_report(run_dir, tmp_path / "x.html", crop="0:99,0:8")
    assert not (tmp_path / "x.html").exists()


def test_ablation_tables_beside_the_paper(run_dir, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    (work / "ablation").mkdir()
    (work / "ablation" / "ablation.csv").write_text(
        "table,configuration,psnr,rmse\nII,Lc1+Lc2+Ladv,30.5,0.03\nII,Lc1,29.0,0.035\n"
        "III,Full Model,30.5,0.03\nIII,No Projection Module,30.9,0.028\n")
    text = rep.write_report(work).read_text()
    assert "Table II — ablation: loss terms" in text and "Table III — ablation: network components" in text
    assert "37.31" in text and "36.34" in text  # the paper's values beside ours
    row = next(r for r in text.split("<tr") if "No Projection Module" in r)
    assert "<b>30.90</b>" in row  # best PSNR of Table III in this run
    # with seeds (ablate --seeds): one row per configuration, mean ± std; the clean truth beside
    (work / "ablation" / "ablation.csv").write_text(
        "table,configuration,seed,psnr,rmse,psnr_clean,rmse_clean\n"
        "III,Full Model,0,30.0,0.03,33.0,0.02\nIII,Full Model,1,31.0,0.03,34.0,0.02\n"
        "III,No Projection Module,0,29.0,0.04,31.0,0.03\nIII,No Projection Module,1,29.2,0.04,31.4,0.03\n")
    text = rep.write_report(work).read_text()
    rows = [r for r in text.split("<tr") if "rh'>Full Model<" in r]  # not the Δ header
    assert len(rows) == 1 and "30.50 ± 0.71" in rows[0] and "33.50 ± 0.71" in rows[0]
    assert "mean ± std over 2 seeds" in text and "PSNR (dB), clean truth" in text
    # paired by seed against the full model: (29.0 − 30.0, 29.2 − 31.0) → −1.400 ± 0.566;
    # clean (31.0 − 33.0, 31.4 − 34.0) → −2.300 ± 0.424; the paper's 36.34 − 37.31 = −0.97
    row = next(r for r in text.split("<tr") if "No Projection Module" in r)
    assert "-1.400 ± 0.566" in row and "-2.300 ± 0.424" in row and "-0.97" in row
    assert "ΔPSNR vs Full Model, paired by seed" in text
    # the output folder of ``maxrf-bench ablate`` alone (no results.csv): its tables only
    page = rep.write_report(work / "ablation").read_text()
    assert "-1.400 ± 0.566" in page and "Table I</h2>" not in page
    assert "Best in <b>bold</b>" in page    # the legend of the ablation tables' bold best stays
    with pytest.raises(mb.StoreError, match="results.csv"):
        rep.write_report(tmp_path)  # neither results.csv nor ablation.csv


def test_cli_report_and_one_line_errors(run_dir, tmp_path):
    env = dict(os.environ, MAXRF_BENCH_CACHE_DIR=str(tmp_path / "cache"))
    res = subprocess.run([BIN / "maxrf-bench", "report", str(run_dir), "-o", str(tmp_path / "out.html"),
                          "--no-assets"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.html").exists() and not (tmp_path / "out_files").exists()
    res = subprocess.run([BIN / "maxrf-bench", "report", str(run_dir), "--crop", "a:b"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "y0:y1,x0:x1" in res.stderr


# --- a real browser ------------------------------------------------------------------

def _chrome():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium not installed (Debian packages chromium, chromium-driver; .ci/run installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed (pip install selenium; part of the test extra)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--hide-scrollbars",
                 # no network: every request would go to a proxy that does not exist
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='maxrf-chromium-')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def test_report_in_headless_chromium(page, run_dir, tmp_path):
    path, _ = page
    driver = _chrome()
    shots = Path(os.environ.get("MAXRF_REPORT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(path.resolve().as_uri())
        logs = driver.get_log("browser")
        assert not [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")], logs
        tables = driver.find_elements("tag name", "table")
        assert len(tables) >= 4 and all(t.is_displayed() for t in tables[:2])
        imgs = driver.find_elements("tag name", "img")
        assert len(imgs) == 2
        for img in imgs:
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 400
            assert img.size["width"] > 300 and img.is_displayed()
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert [r for r in resources if not r.startswith("data:")] == []
        extra = driver.find_elements("css selector", "tr.extra")[0]
        assert not extra.is_displayed()
        driver.find_elements("css selector", "label.tlabel")[0].click()  # the toggle
        assert extra.is_displayed()
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(height + 40, 6000))
        driver.save_screenshot(str(shots / "report.png"))
        assert (shots / "report.png").stat().st_size > 50_000
        assert not [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    finally:
        driver.quit()


class Broken:
    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs):
            raise RuntimeError("diverged")

        register(mb.Method("broken-test", run, "always fails", deterministic=True))


def test_failed_column_is_shown_as_failed(tmp_path):
    toy, _ = _scans(tmp_path)
    with registered_plugin(Broken(), "broken"):
        mb.run_grid(["bicubic", "broken-test"], [str(toy)], out=tmp_path / "run")
    text = rep.write_report(tmp_path / "run", assets=False).read_text()
    first = text.split("<p class='caption'>", 2)[1]
    row = next(r for r in first.split("<tr") if ">PSNR<" in r)
    assert "<td>failed</td>" in row and "<th>broken-test</th>" in first
    assert "broken-test: no maps" in text and "diverged" in text
    assert len(_imgs(text)) == 1  # Fig. 2 with the columns that finished
