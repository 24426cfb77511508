"""Small PyTorch helpers for method plugins (torch is imported on first use, not by the host)."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from .errors import ConfigError


def torch_device(device: str | None):
    """The ``torch.device`` of the run's ``--device``: ``auto`` (or empty) → CUDA when torch
    sees a GPU, else the CPU; ``cuda`` without a GPU is a :class:`ConfigError`."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; "
                              "use --device auto or cpu")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device must be auto, cpu or cuda, found {device!r}")


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None`` or ≤ 0: leave them as they are);
    the previous count is restored afterwards, also on an error."""
    import torch

    before = torch.get_num_threads()
    if n is not None and int(n) > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_thread_count() -> int | None:
    """torch's CPU thread count in this process, or ``None`` where torch is not loaded (it
    is not imported for this)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
