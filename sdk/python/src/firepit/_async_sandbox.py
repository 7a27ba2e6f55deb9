"""The sandbox half of :class:`firepit.AsyncLease`: the methods of the sync lease
(``_sync_sandbox.py``) with ``await``, async iterators for streams, and the blocking parts
(reading local files for an upload, extracting a downloaded archive) in worker threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path, PurePath
from typing import Any

import httpx

from . import _http, _tar
from . import _sandbox_calls as calls
from ._async_streams import AsyncEventStream, AsyncFileReader
from ._calls import Seconds
from ._sandbox_calls import AsyncData, Channel, ProcessRef
from ._transport import AsyncTransport
from .errors import NotFound, error_from_response
from .pty import AsyncPty
from .sandbox_models import DirEntry, FileStat, ProcessInfo, ProcessOutput
from .usage_models import UsageSample


async def _pack(local: str | os.PathLike[str]) -> AsyncIterator[bytes]:
    archive = _tar.pack(local)
    while True:
        chunk = await asyncio.to_thread(next, archive, None)
        if chunk is None:
            return
        yield chunk


class AsyncSandbox:
    """Mixed into :class:`firepit.AsyncLease`: needs ``self.client`` and ``self.id``."""

    client: AsyncTransport

    @property
    def id(self) -> str:
        """The lease id (the lease class provides it)."""
        raise NotImplementedError

    async def _stream(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, AsyncExitStack]:
        stack = AsyncExitStack()
        timeout = httpx.Timeout(self.client._timeout, read=None)
        try:
            response = await stack.enter_async_context(
                self.client._http.stream(method, path, timeout=timeout, **kwargs)
            )
            if not response.is_success:
                await response.aread()
                raise error_from_response(response)
        except httpx.TransportError as error:
            await stack.aclose()
            raise _http.transport_error(self.client.endpoint, error) from error
        except BaseException:
            await stack.aclose()
            raise
        return response, stack

    async def _upload(self, path: str, content: Any, content_type: str) -> int:
        response, stack = await self._stream(
            "PUT", path, content=content, headers={"content-type": content_type}
        )
        async with stack:
            await response.aread()
            return calls.transferred(response)

    async def write_file(
        self,
        path: str | PurePath,
        data: AsyncData,
        *,
        mode: int | None = None,
        create_parents: bool = False,
        append: bool = False,
    ) -> int:
        """See :meth:`firepit.Lease.write_file` (``data`` may also be an async iterable)."""
        target = calls.write_path(self.id, path, mode, create_parents, append)
        return await self._upload(target, calls.achunks(data), "application/octet-stream")

    async def read_file(
        self, path: str | PurePath, *, offset: int = 0, limit: int | None = None
    ) -> AsyncFileReader:
        """See :meth:`firepit.Lease.read_file`."""
        response, stack = await self._stream("GET", calls.read_path(self.id, path, offset, limit))
        return AsyncFileReader(response, stack, self.client.endpoint)

    async def read_bytes(self, path: str | PurePath) -> bytes:
        """A whole guest file as bytes."""
        async with await self.read_file(path) as reader:
            return await reader.read()

    async def read_text(self, path: str | PurePath, encoding: str = "utf-8") -> str:
        """A whole guest file as text."""
        return (await self.read_bytes(path)).decode(encoding)

    async def upload_file(self, local: str | os.PathLike[str], path: str | PurePath) -> int:
        """See :meth:`firepit.Lease.upload_file` (the local file is read in a worker thread)."""
        source = Path(local)
        mode = (await asyncio.to_thread(source.stat)).st_mode & 0o7777
        return await self.write_file(path, source, mode=mode)

    async def download_file(self, path: str | PurePath, local: str | os.PathLike[str]) -> int:
        """See :meth:`firepit.Lease.download_file` (the local file is written in a worker
        thread)."""
        written = 0
        target = Path(local)
        async with await self.read_file(path) as reader:
            file = await asyncio.to_thread(target.open, "wb")
            try:
                async for chunk in reader:
                    await asyncio.to_thread(file.write, chunk)
                    written += len(chunk)
            finally:
                await asyncio.to_thread(file.close)
            if reader.mode is not None:
                await asyncio.to_thread(target.chmod, reader.mode & 0o777)
        return written

    async def upload_dir(self, local: str | os.PathLike[str], path: str | PurePath) -> int:
        """See :meth:`firepit.Lease.upload_dir`."""
        if not Path(local).is_dir():
            raise NotADirectoryError(f"{local} is not a directory")
        return await self._upload(calls.archive_path(self.id, path), _pack(local), "application/x-tar")

    async def download_dir(self, path: str | PurePath, local: str | os.PathLike[str]) -> None:
        """See :meth:`firepit.Lease.download_dir` (extracted in a worker thread)."""
        response, stack = await self._stream("GET", calls.archive_path(self.id, path))
        async with stack:
            reader = _tar.QueueReader()

            def extract() -> None:
                try:
                    _tar.unpack(reader, local)
                finally:
                    reader.finished.set()

            extraction = asyncio.ensure_future(asyncio.to_thread(extract))
            try:
                async for chunk in response.aiter_bytes(calls.CHUNK):
                    if not await asyncio.to_thread(reader.put, chunk):
                        break
                await asyncio.to_thread(reader.put, None)
            except httpx.TransportError as error:
                reader.abort()
                await asyncio.gather(extraction, return_exceptions=True)
                raise _http.transport_error(self.client.endpoint, error) from error
            except BaseException:
                reader.abort()  # cancelled: the worker thread must not wait for chunks forever
                raise
            await extraction

    async def stat(self, path: str | PurePath, *, follow_symlinks: bool = True) -> FileStat:
        """See :meth:`firepit.Lease.stat`."""
        return await self.client._call(calls.stat(self.id, path, follow_symlinks))

    async def exists(self, path: str | PurePath) -> bool:
        """See :meth:`firepit.Lease.exists`."""
        try:
            await self.stat(path, follow_symlinks=False)
        except NotFound:
            return False
        return True

    async def list_dir(self, path: str | PurePath) -> list[DirEntry]:
        """See :meth:`firepit.Lease.list_dir`."""
        return await self.client._call(calls.list_dir(self.id, path))

    async def mkdir(self, path: str | PurePath, *, parents: bool = True, mode: int | None = None) -> None:
        """See :meth:`firepit.Lease.mkdir`."""
        await self.client._call(calls.mkdir(self.id, path, parents, mode))

    async def remove(self, path: str | PurePath, *, recursive: bool = False) -> None:
        """See :meth:`firepit.Lease.remove`."""
        await self.client._call(calls.remove(self.id, path, recursive))

    async def chmod(self, path: str | PurePath, mode: int) -> None:
        """See :meth:`firepit.Lease.chmod`."""
        await self.client._call(calls.chmod(self.id, path, mode))

    async def chown(self, path: str | PurePath, uid: int | None = None, gid: int | None = None) -> None:
        """See :meth:`firepit.Lease.chown`."""
        await self.client._call(calls.chown(self.id, path, uid, gid))

    async def rename(self, source: str | PurePath, destination: str | PurePath) -> None:
        """See :meth:`firepit.Lease.rename`."""
        await self.client._call(calls.rename(self.id, source, destination))

    def exec_stream(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
        stdin: bytes | str | None = None,
        timeout: Seconds | None = None,
    ) -> AsyncEventStream:
        """See :meth:`firepit.Lease.exec_stream`: ``async for event in vm.exec_stream([...])``
        (the command starts when the iteration does), or ``async with vm.exec_stream([...]) as
        events:`` (it starts on entering; leaving the block ends it); see
        :class:`firepit.AsyncEventStream`."""
        body = calls.spawn_body(argv, env, cwd, stdin, timeout)
        path = calls.lease_path(self.id, "exec/stream")
        return AsyncEventStream(lambda: self._stream("POST", path, json=body), self.client.endpoint)

    async def start_process(
        self,
        argv: Sequence[str],
        *,
        tag: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
        timeout: Seconds | None = None,
        output_limit: int | None = None,
        user: str | None = None,
    ) -> ProcessInfo:
        """See :meth:`firepit.Lease.start_process`."""
        return await self.client._call(
            calls.start_process(self.id, argv, tag, env, cwd, timeout, output_limit, user)
        )

    async def metrics(self, *, since_unix_ms: int | None = None) -> list[UsageSample]:
        """See :meth:`firepit.Lease.metrics`."""
        return (await self.client._call(calls.lease_metrics(self.id, since_unix_ms))).samples

    async def processes(self) -> list[ProcessInfo]:
        """See :meth:`firepit.Lease.processes`."""
        return await self.client._call(calls.processes(self.id))

    async def process(self, ref: ProcessRef, *, wait: Seconds | None = None) -> ProcessInfo:
        """See :meth:`firepit.Lease.process`."""
        return await self.client._call(calls.process(self.id, ref, wait))

    async def signal_process(self, ref: ProcessRef, signal: int | str = "TERM") -> None:
        """See :meth:`firepit.Lease.signal_process`."""
        await self.client._call(calls.signal_process(self.id, ref, signal))

    async def remove_process(self, ref: ProcessRef) -> None:
        """See :meth:`firepit.Lease.remove_process`."""
        await self.client._call(calls.remove_process(self.id, ref))

    async def process_output(
        self,
        ref: ProcessRef,
        *,
        channel: Channel = "stdout",
        offset: int = 0,
        max_bytes: int | None = None,
        wait: Seconds | None = None,
    ) -> ProcessOutput:
        """See :meth:`firepit.Lease.process_output`."""
        return await self.client._call(calls.process_output(self.id, ref, channel, offset, max_bytes, wait))

    def follow_output(
        self, ref: ProcessRef, *, channel: Channel = "stdout", offset: int = 0
    ) -> AsyncEventStream:
        """See :meth:`firepit.Lease.follow_output`."""
        path = calls.follow_path(self.id, ref, channel, offset)
        return AsyncEventStream(lambda: self._stream("GET", path), self.client.endpoint)

    async def pty(
        self,
        argv: Sequence[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
    ) -> AsyncPty:
        """See :meth:`firepit.Lease.pty`: ``async with await vm.pty() as term:``."""
        path = calls.pty_path(self.id, argv, rows, cols, env, cwd)
        return await AsyncPty.connect(self.client.endpoint, path, self.client._timeout)
