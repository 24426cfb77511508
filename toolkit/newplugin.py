"""``maxrf-bench new-plugin NAME``: write a working plugin distribution to start from.

The distribution has one method (bilinear upsampling plus the photograph's detail, as in
``docs/plugins.md``), its entry point in the group ``maxrf_bench``, and a test that runs the
method through the host with :func:`maxrf_bench.testing.check_method`.  It installs with
``pip install -e DIR`` and its test passes as written (``tests/test_docs.py`` and
``.ci/run`` check both).  Nothing is written into a folder that exists and is not empty.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError

NAME_RE = r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*"

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A maxrf-bench method plugin: {method}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["maxrf-bench", "numpy>=1.26"]

[project.optional-dependencies]
test = ["pytest>=8"]

# what makes this a maxrf-bench plugin: the entry-point group "maxrf_bench", pointing at the
# module whose hooks register the method
[project.entry-points.maxrf_bench]
{package} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

PLUGIN = '''\
"""The {method!r} method: bilinear upsampling plus the photograph's fine detail, weighted per
element by how the LR map follows the photograph's colours.  Replace ``run`` with yours."""
import numpy as np

import maxrf_bench as mb


def run(inputs: mb.MethodInputs, detail: float = 1.0) -> np.ndarray:
    """Returns (element, y, x) float32 on the HR grid, in the normalised units of
    inputs.maps_lr (0..1 per element)."""
    s = inputs.operator.scale
    lr = inputs.maps_lr.values                          # (element, y_lr, x_lr)
    rgb = inputs.rgb.values                             # (3, y, x), the photograph in [0, 1]
    rgb_lr = inputs.operator.down(rgb)                  # the photograph as the scanner sees it
    a = np.concatenate([rgb_lr.reshape(3, -1), np.ones((1, lr[0].size))]).T
    w, *_ = np.linalg.lstsq(a, lr.reshape(len(lr), -1).T, rcond=None)   # (4, element)
    high = rgb - mb.upsample(rgb_lr, s, "bilinear")     # what the LR grid loses of the photograph
    up = mb.upsample(lr, s, "bilinear")
    inputs.progress(1, 1, "done")
    return (up + detail * np.einsum("ce,cyx->eyx", w[:3], high)).astype(np.float32)


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "{method}", run,
        description="bilinear + the photograph's detail, weighted per element",
        defaults={{"detail": 1.0}},                 # every keyword parameter of run
        presets={{"paper": {{}}, "fast": {{}}}},
        reference="(the paper your method comes from)",
        deterministic=True,                        # the output does not depend on inputs.seed
    ))
'''

TEST = '''\
"""Runs {method!r} through the maxrf-bench host on a toy scene (pytest)."""
from maxrf_bench.testing import check_method, registered_plugin

from {package} import plugin


def test_{ident}_beats_bicubic(tmp_path):
    with registered_plugin(plugin):
        gain = check_method("{method}", tmp_path)   # dB over bicubic on a toy scene
    assert gain > 0.5
'''

README = '''\
# {dist}

A [maxrf-bench](https://github.com/) method plugin, made by `maxrf-bench new-plugin`.

```bash
pip install -e .
maxrf-bench info {method}
maxrf-bench run -m bicubic,{method},{method}+P -d sim-demo -o out
pip install -e '.[test]' && pytest
```

Write your method in `src/{package}/plugin.py` (see the maxrf-bench docs, `docs/plugins.md`).
'''


def new_plugin(name: str, out: str | Path | None = None) -> Path:
    """Write the distribution ``name`` (lower case, e.g. ``my-sr``) into ``out`` (default
    ``./NAME``) and return the folder.  ``out`` must not exist or be empty."""
    if not re.fullmatch(NAME_RE, name or ""):
        raise ConfigError(f"new-plugin: expected a distribution name of lower-case letters, digits "
                          f"and single '-' or '_' (e.g. my-sr), found {name!r}")
    package = name.replace("-", "_")
    method = name.replace("_", "-")
    target = Path(out) if out is not None else Path(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "a folder" if target.is_dir() else "a file"
        raise ConfigError(f"new-plugin: expected -o to name a new or empty folder, found {what} "
                          f"with contents at {str(target)!r} (nothing is overwritten)")
    files = {
        "pyproject.toml": PYPROJECT.format(dist=name, package=package, method=method),
        "README.md": README.format(dist=name, package=package, method=method),
        f"src/{package}/__init__.py": "",
        f"src/{package}/plugin.py": PLUGIN.format(method=method),
        f"tests/test_{package}.py": TEST.format(method=method, package=package, ident=package),
    }
    from .atomic import output_dir  # the one directory-level atomic write

    with output_dir(target, kind="new plugin folder") as tmp:  # replaces nothing but an empty folder
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return target
