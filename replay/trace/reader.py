"""Open plain or compressed files and stream them as newline-aligned byte chunks.

Compression is detected from the magic bytes, not the file name. Every format
is read with an incremental decompressor (zlib, lzma, bz2, zstd), which gives
one uniform loop, handles multi-member/multi-frame files, and detects a
truncated file in the same pass (the decompressor is not at end of stream when
the input runs out). A background thread reads and decompresses ahead while
the caller parses: all four decompressors release the GIL.
"""

from __future__ import annotations

import bz2
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import zstandard

from replay.errors import BadInputError

T = TypeVar("T")

MAGICS: dict[str, bytes] = {
    "gzip": b"\x1f\x8b",
    "zstd": b"\x28\xb5\x2f\xfd",
    "xz": b"\xfd7zXZ\x00",
    "bz2": b"BZh",
}

DEFAULT_CHUNK_BYTES = 16 << 20
RAW_BLOCK_BYTES = 1 << 20


def compression_of(path: Path) -> str | None:
    """Return ``gzip``, ``zstd``, ``xz``, ``bz2`` or None (plain) from the magic bytes."""
    with open(path, "rb") as f:
        head = f.read(6)
    for name, magic in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


def _new_decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "xz":
        return lzma.LZMADecompressor()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return zstandard.ZstdDecompressor().decompressobj()


def _decompressed_blocks(
    path: Path, kind: str | None, on_raw: Callable[[int], None] | None
) -> Iterator[bytes]:
    """Yield decompressed blocks of ``path``; raise BadInputError if it is cut short."""
    consumed = 0
    with open(path, "rb") as raw:
        if kind is None:
            while block := raw.read(RAW_BLOCK_BYTES * 8):
                consumed += len(block)
                if on_raw is not None:
                    on_raw(consumed)
                yield block
            return
        dec = _new_decompressor(kind)
        pending = b""
        at_boundary = False  # True right after a member/frame ended
        while True:
            from_disk = not pending
            block = pending or raw.read(RAW_BLOCK_BYTES)
            pending = b""
            if not block:
                break
            if from_disk:
                consumed += len(block)
                if on_raw is not None:
                    on_raw(consumed)
            try:
                out = dec.decompress(block)
            except (zlib.error, lzma.LZMAError, OSError, zstandard.ZstdError, EOFError) as exc:
                raise BadInputError(f"{kind} data is corrupt ({exc})", file=str(path)) from exc
            at_boundary = False
            if out:
                yield out
            if dec.eof:
                # Multi-member gzip / multi-stream xz / multi-frame zstd: go on
                # with the bytes after this member.
                pending = dec.unused_data
                dec = _new_decompressor(kind)
                at_boundary = True
        if not at_boundary and not dec.eof:
            raise BadInputError(
                f"{kind} data is truncated (the stream ends in the middle of a "
                f"{'frame' if kind == 'zstd' else 'member'})",
                file=str(path),
            )


def iter_chunks(
    path: Path,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    threaded: bool = True,
    on_raw: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield the decompressed file in chunks of about ``chunk_bytes`` ending at a newline.

    The last chunk may end without a newline. ``on_raw`` receives the number
    of bytes read from disk so far (compressed bytes for compressed files).
    Raises BadInputError on a truncated or corrupt compressed file.
    """
    path = Path(path)
    kind = compression_of(path)

    def produce() -> Iterator[bytes]:
        parts: list[bytes] = []
        size = 0
        for block in _decompressed_blocks(path, kind, on_raw):
            parts.append(block)
            size += len(block)
            if size < chunk_bytes:
                continue
            data = b"".join(parts)
            cut = data.rfind(b"\n")
            if cut < 0:
                parts, size = [data], len(data)
                continue
            yield data[: cut + 1]
            rest = data[cut + 1 :]
            parts, size = ([rest], len(rest)) if rest else ([], 0)
        if size:
            yield b"".join(parts)

    if not threaded:
        yield from produce()
        return
    yield from ahead(produce())


def ahead(gen: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``gen`` in a thread, ``depth`` items ahead of the consumer (errors re-raised here)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in gen:
                if not put(("data", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer thread
            put(("error", exc))
        finally:
            close = getattr(gen, "close", None)
            if close is not None:  # a generator stopped early: run its cleanup here
                close()

    t = threading.Thread(target=worker, name="replay-reader", daemon=True)
    t.start()
    try:
        while True:
            tag, payload = q.get()
            if tag == "data":
                yield payload
            elif tag == "end":
                return
            else:
                raise payload
    finally:
        stop.set()
        t.join(timeout=5)


def file_size(path: Path) -> int:
    """Size in bytes of the file on disk (the compressed size for compressed files)."""
    return os.path.getsize(path)
