"""Local directories as tar streams, with bounded memory both ways.

:func:`pack` yields a directory's archive piece by piece (headers, then each file in 64 KiB
chunks), so ``upload_dir`` streams a directory of any size. :func:`unpack` extracts an archive
read from a stream with the standard library's ``data`` filter (a guest's archive is untrusted
input): entries that would land outside the destination, device files and links pointing out of
it are refused, absolute names lose their leading ``/`` (they land inside), and setuid/setgid
bits are dropped.
"""

from __future__ import annotations

import io
import os
import queue
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

BLOCK = 512
CHUNK = 64 * 1024


def pack(directory: str | os.PathLike[str]) -> Iterator[bytes]:
    """The tar archive of ``directory``'s contents (relative names; symbolic links as links;
    sockets skipped), as a stream of chunks."""
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    # A TarFile only to describe entries (`gettarinfo` also tracks hard links); nothing is written
    # through it.
    describer = tarfile.TarFile(fileobj=io.BytesIO(), mode="w", format=tarfile.PAX_FORMAT)
    for path, name in _walk(root, ""):
        info = describer.gettarinfo(str(path), arcname=name)
        if info is None:
            continue  # a socket
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.isreg():
            yield from _contents(path, info.size)
    yield b"\0" * (2 * BLOCK)


def _walk(directory: Path, prefix: str) -> Iterator[tuple[Path, str]]:
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        path = Path(entry.path)
        yield path, name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path, f"{name}/")


def _contents(path: Path, size: int) -> Iterator[bytes]:
    left = size
    with path.open("rb") as file:
        while left > 0:
            chunk = file.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} shrank while it was being sent")
            left -= len(chunk)
            yield chunk
    padding = -size % BLOCK
    if padding:
        yield b"\0" * padding


class ChunkReader(io.RawIOBase):
    """A readable binary file over an iterator of chunks."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._source)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def unpack(archive: io.RawIOBase | io.BufferedIOBase, directory: str | os.PathLike[str]) -> None:
    """Extracts a tar stream into ``directory`` (created if missing), safely (module docs)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        tar.extractall(target, filter="data")
    # Read to the end: an archive whose transfer broke after its last entry must still fail.
    while archive.read(CHUNK):
        pass


class QueueReader(io.RawIOBase):
    """A readable binary file fed chunk by chunk from another thread (the async client's
    download feeds it; the extraction runs in a worker thread). ``None`` ends it."""

    def __init__(self, capacity: int = 8) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(capacity)
        self.finished = threading.Event()
        self._aborted = threading.Event()
        self._buffer = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def abort(self) -> None:
        """Makes the reading thread fail soon (within 0.1 s) instead of waiting for chunks that
        will not come (the feeder failed or was cancelled)."""
        self._aborted.set()

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer and not self._ended:
            try:
                chunk = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._aborted.is_set():
                    raise OSError("the archive's download was abandoned") from None
                continue
            if chunk is None:
                self._ended = True
            else:
                self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def put(self, chunk: bytes | None) -> bool:
        """Queues a chunk (blocking while the queue is full); False once the reader has finished
        (failed or done), so the feeder stops."""
        while not self.finished.is_set():
            try:
                self.queue.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
