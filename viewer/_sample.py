"""napari sample data: the embedded default painting of maxrf-bench (made by the simulator,
the ``default=True`` dataset of the registry), as the reader shows a scan."""
from __future__ import annotations

import tempfile
from pathlib import Path


def sample_painting():
    """The default dataset (``sim-demo``: 128×128, 8 element lines) as layer-data tuples."""
    import maxrf_bench as mb

    from ._reader import read_scan

    name = next((n for n, d in mb.get_datasets().items() if d.default), None)
    if name is None:
        from maxrf_bench.errors import ConfigError

        raise ConfigError("no dataset is registered as the default (the simulator plugin is missing)")
    scan = mb.get_dataset(name).load()
    folder = Path(tempfile.mkdtemp(prefix="maxrf-bench-sample-"))
    path = mb.save_scan(scan, folder / f"{name}.zarr")
    return read_scan(path)
