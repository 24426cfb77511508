"""docs/plugins.md says what the code does: every hook with its exact signature, every field
of Method and MethodInputs, and its ten-minute plugin installs, is listed and runs."""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import maxrf_bench as mb
from maxrf_bench import hookspecs
from maxrf_bench.testing import registered_plugin, toy_scene

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _block(doc: str, marker: str) -> str:
    m = re.search(rf"<!-- test: {marker} -->\s*```python\n(.*?)```", doc, re.S)
    assert m, f"docs/plugins.md has no code block marked {marker!r}"
    return m.group(1)


def test_every_hookspec_is_documented_with_its_exact_signature(doc):
    specs = {n: f for n, f in vars(hookspecs).items()
             if n.startswith("maxrf_bench_") and callable(f) and hasattr(f, "maxrf_bench_spec")}
    assert len(specs) >= 4
    for name, func in specs.items():
        signature = f"def {name}{inspect.signature(func)}"
        assert f"`{signature}`" in doc, f"docs/plugins.md lacks the exact signature {signature}"
    documented = set(re.findall(r"`def (maxrf_bench_\w+)\(", doc))
    assert documented == set(specs), f"documented hooks that do not exist: {documented - set(specs)}"


def test_every_field_of_method_and_method_inputs_is_documented(doc):
    for f in dataclasses.fields(mb.Method):
        assert f"| `{f.name}` |" in doc, f"Method.{f.name} is not in the table of docs/plugins.md"
    names = [f.name for f in dataclasses.fields(mb.MethodInputs)]
    names += [n for n, v in vars(mb.MethodInputs).items() if not n.startswith("_")
              and (isinstance(v, property) or callable(v))]
    for n in names:
        assert re.search(rf"\| `inputs\.{n}(\(|`)", doc), f"MethodInputs.{n} is not documented"
    for op in ("scale", "down", "project", "adjoint", "gram_solve"):
        assert re.search(rf"\| `op\.{op}(\(|`)", doc), f"Operator.{op} is not documented"
        assert hasattr(mb.BlockMean(4), op)
    # the three questions a new author asked: the photograph, how to apply U, what down returns
    assert "`inputs.rgb`" in doc and "not a function" in doc and "**plain mean**" in doc


def test_the_documented_plugin_runs_and_its_author_test_passes(doc, tmp_path, monkeypatch):
    pkg = tmp_path / "my_sr"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(_block(doc, "plugin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    exec(compile(_block(doc, "author-test"), "docs/plugins.md (author test)", "exec"), namespace)
    work = tmp_path / "work"
    work.mkdir()
    namespace["test_my_detail"](work)  # the doc's own assertions
    from my_sr import plugin

    with registered_plugin(plugin):
        method = mb.get_method("my-detail")
        assert method.deterministic and method.defaults == {"detail": 1.0}


def test_the_documented_distribution_installs_lists_and_runs(doc, tmp_path):
    """The pyproject of the doc, as pip would install it: dist-info with its entry point."""
    toml = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    project = tomllib.loads(toml)
    eps = project["project"]["entry-points"]["maxrf_bench"]
    (name, target), = eps.items()
    site = tmp_path / "site"
    (site / "my_sr").mkdir(parents=True)
    (site / "my_sr" / "__init__.py").write_text("")
    (site / "my_sr" / "plugin.py").write_text(_block(doc, "plugin"))
    dist = project["project"]["name"]
    info = site / f"{dist.replace('-', '_')}-{project['project']['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {project['project']['version']}\n")
    (info / "entry_points.txt").write_text(f"[maxrf_bench]\n{name} = {target}\n")
    (info / "top_level.txt").write_text("my_sr\n")
    env = dict(os.environ, PYTHONPATH=str(site), MAXRF_BENCH_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MAXRF_BENCH_STRICT_PLUGINS", None)

    def cli(*args):
        res = subprocess.run([BIN / "maxrf-bench", *map(str, args)], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "my-detail" in cli("list", "methods")
    # the doc's example of the `plugins` layout is what the command prints
    shown = re.search(r"<!-- output: plugins -->\s*```text\n(.*?)```", doc, re.S).group(1)
    assert shown.strip() and shown in cli("plugins") + "\n"
    info = cli("info", "my-detail")
    assert "plugin: my_sr 0.1.0 (distribution my-sr)" in info
    assert re.search(r"detail\s+float\s+1\s", info), info
    scan = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    cli("run", "-m", "bicubic,my-detail,my-detail+P", "-d", scan, "-o", tmp_path / "run", "-q")
    results = mb.read_results(tmp_path / "run")
    assert results.value("toy", "my-detail+P", "consistency") < 1e-6
    assert results.value("toy", "my-detail", "psnr") > results.value("toy", "bicubic", "psnr") + 1


def test_readme_and_docs_do_not_point_at_source_paths_for_installed_users(doc):
    # the hookspecs are named by their importable module; the source path only as such
    assert "maxrf_bench.hookspecs" in doc
    for line in doc.splitlines():
        if "toolkit/hookspecs.py" in line:
            assert "source tree" in line


def test_calling_the_operator_says_which_method_to_use():
    import numpy as np

    for op in (mb.BlockMean(4), mb.GaussianBeam(4, sigma=1.0)):
        with pytest.raises(TypeError, match=r"use \.down\(Y\) for U .*\.project\(Y, Y_lr\)"):
            op(np.zeros((8, 8), np.float32))


def test_the_documented_metrics_and_their_test_run(doc, tmp_path, monkeypatch):
    pkg = tmp_path / "my_sr"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "metric.py").write_text(_block(doc, "metric"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m == "my_sr" or m.startswith("my_sr.")]:
        monkeypatch.delitem(sys.modules, mod)  # another test's my_sr (the method's) goes
    namespace: dict = {}
    exec(compile(_block(doc, "metric-test"), "docs/plugins.md (metric test)", "exec"), namespace)
    work = tmp_path / "work"
    work.mkdir()
    namespace["test_my_metrics"](work)
    # every keyword the host may pass to a metric is documented in the contract's table
    from maxrf_bench.info import METRIC_KEYWORDS

    for kw in METRIC_KEYWORDS:
        assert f"| `{kw}=` |" in doc, f"the metric keyword {kw}= is not documented"


README = ROOT / "README.md"


def test_readme_claims_about_tables_and_report_hold(tmp_path):
    """The README's words on `(1 run)` and on the report's side folder match what runs."""
    from click.testing import CliRunner

    from maxrf_bench.cli import cli

    readme = README.read_text(encoding="utf-8")
    scan = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    mb.run_grid(["bicubic", "guided"], [str(scan)], out=tmp_path / "run", seeds=[0, 1])
    assert "Deterministic methods run once and say `(1 run)`" in readme
    table = CliRunner().invoke(cli, ["table", str(tmp_path / "run")]).output
    psnr = next(line for line in table.splitlines() if "PSNR" in line)
    assert psnr.count("(1 run)") == 2, table
    folder = re.search(r"Markdown tables go to `([^`]+)/` beside it", readme).group(1)
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / folder).is_dir(), sorted(p.name for p in (tmp_path / "run").iterdir())


def test_every_command_and_option_of_the_readme_usage_exists():
    """The "Using it" block names only commands and options that exist (drift shows here)."""
    from click.testing import CliRunner

    from maxrf_bench.cli import cli

    readme = README.read_text(encoding="utf-8")
    block = re.search(r"## Using it\s*```bash\n(.*?)```", readme, re.S).group(1)
    runner = CliRunner()
    helps: dict[str, str] = {}
    checked = 0
    for line in block.splitlines():
        m = re.match(r"maxrf-bench ([a-z-]+)(.*)", line.split("#")[0].strip())
        if not m:
            continue
        command, rest = m.groups()
        if command not in helps:
            res = runner.invoke(cli, [command, "--help"])
            assert res.exit_code == 0, f"README names `maxrf-bench {command}`, which does not exist"
            helps[command] = res.output
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
            assert option in helps[command], f"README: `maxrf-bench {command}` has no {option}"
            checked += 1
    assert len(helps) >= 12 and checked >= 20, (sorted(helps), checked)
