"""Atomic file writes: readers see the old file or the new one, never half of one."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was::

        with atomic_path("model.onnx") as tmp:
            onnx.save_model(model, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically (checkpoints, trained weights).

    torch is imported here, on first use, so that importing :mod:`maxrf_bench` stays light.
    Save plain tensors and containers of them, so the file loads with
    ``torch.load(path, weights_only=True)``.
    """
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
