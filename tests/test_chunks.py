"""The Blosc chunk check that stops a truncated or swapped chunk from decoding silently.

numcodecs' Blosc decoder trusts each chunk's header and reads past the end of a short
buffer; whether that errors depends on the memory after it.  ``check_blosc_chunks`` must
therefore decide from the file alone: these cases build each kind of damage and check the
verdict, including the store formats the check must leave alone."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from maxrf_infer.chunks import ChunkError, check_blosc_chunks


@pytest.fixture(params=[2, 3], ids=["zarr2", "zarr3"])
def store(request, tmp_path):
    path = tmp_path / "s.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=request.param)
    if request.param == 2:
        from numcodecs import Blosc

        kw = {"compressors": Blosc(cname="lz4")}
    else:
        kw = {"compressors": zarr.codecs.BloscCodec(cname="lz4")}
    a = group.create_array("maps", shape=(3, 40, 40), chunks=(3, 16, 16), dtype="f4", **kw)
    a[:] = np.random.default_rng(0).random((3, 40, 40), dtype=np.float32)
    b = group.create_array("small", shape=(8,), chunks=(4,), dtype="u1", **kw)
    b[:] = np.arange(8, dtype=np.uint8)
    return path, request.param


def _chunks(path, name):
    return sorted(p for p in (path / name).rglob("*") if p.is_file() and p.name[0].isdigit())


def test_an_intact_store_passes_and_every_chunk_is_checked(store):
    path, fmt = store
    check_blosc_chunks(path)
    assert len(_chunks(path, "maps")) == 9  # 3 × 3 chunk grid on 40², all present


@pytest.mark.parametrize("cut", [1, 7, 0.5])
def test_a_truncated_chunk_is_named_with_both_sizes(store, cut):
    path, _ = store
    chunk = _chunks(path, "maps")[4]
    raw = chunk.read_bytes()
    keep = int(len(raw) * cut) if isinstance(cut, float) else len(raw) - cut
    chunk.write_bytes(raw[:keep])
    with pytest.raises(ChunkError) as err:
        check_blosc_chunks(path)
    rel = chunk.relative_to(path).as_posix()
    assert str(err.value) == (f"chunk {rel!r} is truncated or corrupt: its Blosc header declares "
                              f"{len(raw)} bytes, the file holds {keep}")


def test_trailing_bytes_and_a_short_header_are_refused(store):
    path, _ = store
    chunk = _chunks(path, "maps")[0]
    chunk.write_bytes(chunk.read_bytes() + b"\0\0")
    with pytest.raises(ChunkError, match="the file holds"):
        check_blosc_chunks(path)
    chunk.write_bytes(b"\x02\x01")
    with pytest.raises(ChunkError, match="at least 16 bytes, found 2 bytes"):
        check_blosc_chunks(path)


def test_a_chunk_from_another_array_is_refused_by_its_decoded_size(store):
    path, _ = store
    shutil.copy(_chunks(path, "small")[0], _chunks(path, "maps")[2])
    with pytest.raises(ChunkError, match=r"decodes to 4 bytes, the array 'maps' expects 3072 per chunk"):
        check_blosc_chunks(path)


def test_stores_without_blosc_and_plain_files_are_left_to_the_decoder(tmp_path):
    path = tmp_path / "z.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    from numcodecs import Zlib

    a = group.create_array("maps", shape=(16,), chunks=(8,), dtype="f4", compressors=Zlib())
    a[:] = 1.0
    chunk = _chunks(path, "maps")[0]
    chunk.write_bytes(chunk.read_bytes()[:3])  # zlib reports its own truncation
    check_blosc_chunks(path)
    check_blosc_chunks(tmp_path / "missing.zarr")
    (tmp_path / "file.zarr").write_bytes(b"not a store")
    check_blosc_chunks(tmp_path / "file.zarr")
