"""Reject a Zarr store whose Blosc chunks are truncated or of the wrong size, before decoding.

numcodecs' Blosc decoder trusts the 16-byte header at the start of each chunk: it reads
``cbytes`` compressed bytes from the buffer whatever the buffer's real length.  A chunk cut
short (a copy interrupted, a full disk) therefore decodes *past the end of its buffer*:
usually an error ("error during blosc decompression: -1"), but depending on what lies in
memory after the buffer it can also "succeed" with garbage values, and a corrupt scan is
then read silently.  (Seen in this project: a half-truncated chunk read without error in
some pytest-xdist workers.)

:func:`check_blosc_chunks` compares each chunk file's header with the file itself, reading
only the header: ``cbytes`` must equal the file's size and ``nbytes`` the chunk's declared
size (``prod(chunks) × itemsize``, when no filter changes it).  It covers local directory
stores in Zarr format 2 (what this project writes) and format 3 arrays whose last codec is
Blosc without sharding; other layouts are left to the decoder.  Standard library only, so
``maxrf_infer`` installs alone; the host uses it through :func:`maxrf_bench.open_scan`.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

__all__ = ["ChunkError", "check_blosc_chunks"]

_HEADER = 16  # Blosc 1 frame header: version, versionlz, flags, typesize, nbytes, blocksize, cbytes


class ChunkError(ValueError):
    """A chunk whose stored size disagrees with its own Blosc header or its array's metadata."""


def _arrays(root: Path):
    """Yield ``(array folder, chunk shape, itemsize or None, chunk files)`` for Blosc arrays."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        folder = Path(folder)
        if ".zarray" in files:  # format 2: chunk files sit beside .zarray, named 0.0.0 or 0/0/0
            meta = json.loads((folder / ".zarray").read_text())
            comp = meta.get("compressor") or {}
            if comp.get("id") != "blosc":
                continue
            itemsize = None if meta.get("filters") else _itemsize(meta.get("dtype"))
            sep = meta.get("dimension_separator", ".")
            chunks = [p for p in _walk_files(folder) if p.name[0].isdigit()]
            if sep == ".":
                chunks = [p for p in chunks if p.parent == folder]
            yield folder, meta.get("chunks") or [], itemsize, chunks
        elif "zarr.json" in files:  # format 3: chunks under c/ (default encoding)
            meta = json.loads((folder / "zarr.json").read_text())
            codecs = meta.get("codecs") or []
            if meta.get("node_type") != "array" or not codecs or codecs[-1].get("name") != "blosc":
                continue
            if any(c.get("name") == "sharding_indexed" for c in codecs):
                continue
            grid = ((meta.get("chunk_grid") or {}).get("configuration") or {}).get("chunk_shape") or []
            plain = len(codecs) == 2 and codecs[0].get("name") == "bytes"
            itemsize = _itemsize(meta.get("data_type")) if plain else None
            yield folder, grid, itemsize, sorted(p for p in _walk_files(folder / "c"))


def _walk_files(folder: Path):
    if not folder.is_dir():
        return []
    return sorted(Path(d) / f for d, _, fs in os.walk(folder) for f in fs if not f.startswith("."))


def _itemsize(dtype) -> int | None:
    """Bytes per item of a Zarr dtype string ('<f4', '|u1') or a format-3 name ('float32')."""
    if not isinstance(dtype, str):
        return None
    named = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2,
             "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8}
    if dtype in named:
        return named[dtype]
    digits = dtype.lstrip("<>|=").lstrip("biufc")
    return int(digits) if digits.isdigit() else None


def check_blosc_chunks(path: str | os.PathLike) -> None:
    """Raise :class:`ChunkError` naming the first Blosc chunk under the local Zarr store
    ``path`` whose file is shorter or longer than its header says, or whose decoded size is
    not its array's chunk size.  Reads 16 bytes per chunk; a non-directory is ignored."""
    root = Path(path)
    if not root.is_dir():
        return
    for folder, chunk_shape, itemsize, files in _arrays(root):
        expected = math.prod(chunk_shape) * itemsize if itemsize and chunk_shape else None
        for chunk in files:
            size = chunk.stat().st_size
            with open(chunk, "rb") as fh:
                head = fh.read(_HEADER)
            where = f"chunk {chunk.relative_to(root).as_posix()!r}"
            if len(head) < _HEADER:
                raise ChunkError(f"{where} is truncated: expected a Blosc chunk of at least "
                                 f"{_HEADER} bytes, found {size} bytes")
            nbytes, _, cbytes = struct.unpack("<III", head[4:16])
            if cbytes != size:
                raise ChunkError(f"{where} is truncated or corrupt: its Blosc header declares "
                                 f"{cbytes} bytes, the file holds {size}")
            if expected is not None and nbytes != expected:
                raise ChunkError(f"{where} is corrupt: it decodes to {nbytes} bytes, the array "
                                 f"{folder.name!r} expects {expected} per chunk")
