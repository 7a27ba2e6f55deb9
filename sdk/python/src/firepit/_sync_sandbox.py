"""The sandbox half of a sync :class:`firepit.Lease`: files, directories, streamed commands,
background processes and terminals. :class:`firepit.AsyncLease` has the same methods with
``await`` (``_async_sandbox.py``); both build their requests in ``_sandbox_calls.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path, PurePath
from typing import Any

import httpx

from . import _http, _tar
from . import _sandbox_calls as calls
from ._calls import Seconds
from ._sandbox_calls import Channel, Data, ProcessRef
from ._sync_streams import EventStream, FileReader
from ._transport import SyncTransport
from .errors import NotFound, error_from_response
from .pty import Pty
from .sandbox_models import DirEntry, FileStat, ProcessInfo, ProcessOutput
from .usage_models import UsageSample


class SyncSandbox:
    """Mixed into :class:`firepit.Lease`: needs ``self.client`` and ``self.id``."""

    client: SyncTransport

    @property
    def id(self) -> str:
        """The lease id (the lease class provides it)."""
        raise NotImplementedError

    def _stream(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, ExitStack]:
        """Opens a streamed exchange (no read timeout: output may pause for as long as it likes)."""
        stack = ExitStack()
        http = self.client._http
        timeout = httpx.Timeout(self.client._timeout, read=None)
        try:
            response = stack.enter_context(http.stream(method, path, timeout=timeout, **kwargs))
            if not response.is_success:
                response.read()
                raise error_from_response(response)
        except httpx.TransportError as error:
            stack.close()
            raise _http.transport_error(self.client.endpoint, error) from error
        except BaseException:
            stack.close()
            raise
        return response, stack

    def _upload(self, path: str, content: Any, content_type: str) -> int:
        response, stack = self._stream("PUT", path, content=content, headers={"content-type": content_type})
        with stack:
            response.read()
            return calls.transferred(response)

    # Files.

    def write_file(
        self,
        path: str | PurePath,
        data: Data,
        *,
        mode: int | None = None,
        create_parents: bool = False,
        append: bool = False,
    ) -> int:
        """Writes ``data`` to a guest file, streaming it (``PUT /v1/leases/{id}/files``); returns
        the bytes written. ``data`` is bytes, text (UTF-8), a binary file object or an iterable
        of chunks; nothing is read into memory whole.

        Example::

            vm.write_file("/tmp/hello.txt", "hello\\n", mode=0o600)
            with open("big.bin", "rb") as local:
                vm.write_file("/tmp/big.bin", local)
        """
        target = calls.write_path(self.id, path, mode, create_parents, append)
        return self._upload(target, calls.chunks(data), "application/octet-stream")

    def read_file(self, path: str | PurePath, *, offset: int = 0, limit: int | None = None) -> FileReader:
        """Opens a guest file for streaming (``GET /v1/leases/{id}/files``).

        Example::

            with vm.read_file("/var/log/big.log") as reader:
                for chunk in reader:
                    sink.write(chunk)
        """
        response, stack = self._stream("GET", calls.read_path(self.id, path, offset, limit))
        return FileReader(response, stack, self.client.endpoint)

    def read_bytes(self, path: str | PurePath) -> bytes:
        """A whole guest file as bytes."""
        with self.read_file(path) as reader:
            return reader.read()

    def read_text(self, path: str | PurePath, encoding: str = "utf-8") -> str:
        """A whole guest file as text."""
        return self.read_bytes(path).decode(encoding)

    def upload_file(self, local: str | os.PathLike[str], path: str | PurePath) -> int:
        """Copies a local file into the guest, keeping its permission bits."""
        source = Path(local)
        with source.open("rb") as file:
            return self.write_file(path, file, mode=source.stat().st_mode & 0o7777)

    def download_file(self, path: str | PurePath, local: str | os.PathLike[str]) -> int:
        """Copies a guest file to a local path, keeping its permission bits; returns its size."""
        written = 0
        target = Path(local)
        with self.read_file(path) as reader, target.open("wb") as file:
            for chunk in reader:
                file.write(chunk)
                written += len(chunk)
            if reader.mode is not None:
                target.chmod(reader.mode & 0o777)
        return written

    def upload_dir(self, local: str | os.PathLike[str], path: str | PurePath) -> int:
        """Copies a local directory's contents into a guest directory (created if missing) as a
        tar stream (``PUT /v1/leases/{id}/archive``): modes, times and symbolic links are kept.
        Returns the archive's size."""
        return self._upload(calls.archive_path(self.id, path), _tar.pack(local), "application/x-tar")

    def download_dir(self, path: str | PurePath, local: str | os.PathLike[str]) -> None:
        """Copies a guest directory's contents into a local directory (created if missing)
        (``GET /v1/leases/{id}/archive``); entries that would land outside it are refused."""
        response, stack = self._stream("GET", calls.archive_path(self.id, path))
        with stack:
            try:
                _tar.unpack(_tar.ChunkReader(response.iter_bytes(calls.CHUNK)), local)
            except httpx.TransportError as error:
                raise _http.transport_error(self.client.endpoint, error) from error

    def stat(self, path: str | PurePath, *, follow_symlinks: bool = True) -> FileStat:
        """Metadata of a guest path (:class:`firepit.NotFound` if it does not exist)."""
        return self.client._call(calls.stat(self.id, path, follow_symlinks))

    def exists(self, path: str | PurePath) -> bool:
        """Whether a guest path exists."""
        try:
            self.stat(path, follow_symlinks=False)
        except NotFound:
            return False
        return True

    def list_dir(self, path: str | PurePath) -> list[DirEntry]:
        """A guest directory's entries, sorted by name."""
        return self.client._call(calls.list_dir(self.id, path))

    def mkdir(self, path: str | PurePath, *, parents: bool = True, mode: int | None = None) -> None:
        """Creates a guest directory (with its parents, and fine if it exists, by default)."""
        self.client._call(calls.mkdir(self.id, path, parents, mode))

    def remove(self, path: str | PurePath, *, recursive: bool = False) -> None:
        """Removes a file, link or empty directory (``recursive``: a directory and its contents)."""
        self.client._call(calls.remove(self.id, path, recursive))

    def chmod(self, path: str | PurePath, mode: int) -> None:
        """Sets a guest path's permission bits."""
        self.client._call(calls.chmod(self.id, path, mode))

    def chown(self, path: str | PurePath, uid: int | None = None, gid: int | None = None) -> None:
        """Sets a guest path's owner and/or group."""
        self.client._call(calls.chown(self.id, path, uid, gid))

    def rename(self, source: str | PurePath, destination: str | PurePath) -> None:
        """Renames (moves) a guest path."""
        self.client._call(calls.rename(self.id, source, destination))

    # Streamed commands and background processes.

    def exec_stream(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
        stdin: bytes | str | None = None,
        timeout: Seconds | None = None,
    ) -> EventStream:
        """Runs a command and yields its events as they happen (``POST
        /v1/leases/{id}/exec/stream``): :class:`firepit.Started`, :class:`firepit.Output`
        chunks, then :class:`firepit.Exit`. ``timeout`` kills its whole process group. Leaving
        the loop early kills the command.

        Example::

            for event in vm.exec_stream(["sh", "-c", "echo one; sleep 2; echo two"]):
                if isinstance(event, firepit.Output):
                    print(event.channel, event.text, end="")
                elif isinstance(event, firepit.Exit):
                    print("exit", event.exit_code)
        """
        body = calls.spawn_body(argv, env, cwd, stdin, timeout)
        response, stack = self._stream("POST", calls.lease_path(self.id, "exec/stream"), json=body)
        return EventStream(response, stack, self.client.endpoint)

    def start_process(
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
        """Starts a background process (``POST /v1/leases/{id}/processes``): it outlives this
        client and this call, until it exits, is signalled, or the lease ends. ``tag`` names it;
        ``output_limit`` is the output kept per channel (default 2 MiB, the newest); ``user``
        runs it as that user (a name, a uid or ``uid:gid``; default root), from their home.

        Example::

            vm.start_process(["sh", "-c", "while :; do date; sleep 1; done"], tag="clock")
            out = vm.process_output("clock", wait=2)
            vm.signal_process("clock", "TERM")
        """
        return self.client._call(
            calls.start_process(self.id, argv, tag, env, cwd, timeout, output_limit, user)
        )

    def metrics(self, *, since_unix_ms: int | None = None) -> list[UsageSample]:
        """The VM's usage samples the daemon keeps (one every 5 s by default), oldest first: CPU %,
        guest memory, host RSS, disk, network, OOM kills. With ``since_unix_ms`` (a sample's
        ``at_unix_ms``), only the newer ones.

        Example::

            samples = vm.metrics()
            if samples and samples[-1].cpu_percent is not None:
                print(f"{samples[-1].cpu_percent:.1f} % of {samples[-1].cpus} vCPUs")
        """
        return self.client._call(calls.lease_metrics(self.id, since_unix_ms)).samples

    def processes(self) -> list[ProcessInfo]:
        """The background processes, running and recently exited, oldest first."""
        return self.client._call(calls.processes(self.id))

    def process(self, ref: ProcessRef, *, wait: Seconds | None = None) -> ProcessInfo:
        """A background process by id or tag; with ``wait``, after waiting that long for its exit."""
        return self.client._call(calls.process(self.id, ref, wait))

    def signal_process(self, ref: ProcessRef, signal: int | str = "TERM") -> None:
        """Sends a signal (a number or a name: ``"TERM"``, ``"KILL"``, ``"INT"``...) to a
        background process's whole process group."""
        self.client._call(calls.signal_process(self.id, ref, signal))

    def remove_process(self, ref: ProcessRef) -> None:
        """Forgets an exited background process and frees its output."""
        self.client._call(calls.remove_process(self.id, ref))

    def process_output(
        self,
        ref: ProcessRef,
        *,
        channel: Channel = "stdout",
        offset: int = 0,
        max_bytes: int | None = None,
        wait: Seconds | None = None,
    ) -> ProcessOutput:
        """A background process's output from ``offset`` (``wait``: up to that long for some to
        arrive). Continue from ``next_offset``; ``missed`` counts bytes the guest dropped."""
        return self.client._call(calls.process_output(self.id, ref, channel, offset, max_bytes, wait))

    def follow_output(self, ref: ProcessRef, *, channel: Channel = "stdout", offset: int = 0) -> EventStream:
        """A background process's output from ``offset`` as it is written:
        :class:`firepit.Output` chunks (with ``offset``), :class:`firepit.Eof`, then
        :class:`firepit.Exit` once it exited."""
        response, stack = self._stream("GET", calls.follow_path(self.id, ref, channel, offset))
        return EventStream(response, stack, self.client.endpoint)

    # Terminals.

    def pty(
        self,
        argv: Sequence[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
    ) -> Pty:
        """Opens an interactive terminal running ``argv`` (default: a login shell) over a
        WebSocket (``GET /v1/leases/{id}/pty``); see :class:`firepit.Pty`."""
        path = calls.pty_path(self.id, argv, rows, cols, env, cwd)
        return Pty.connect(self.client.endpoint, path, self.client._timeout)
