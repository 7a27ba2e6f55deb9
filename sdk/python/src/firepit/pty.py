"""Interactive terminals in a VM: :class:`Pty` (sync) and :class:`AsyncPty` (asyncio), over the
daemon's PTY WebSocket (``GET /v1/leases/{id}/pty``) on its Unix socket or TCP.

Binary messages are terminal bytes both ways; resizes and signals are small JSON messages; the
daemon says ``started`` first and ``exit`` (with the status) before it closes. Closing the
terminal (or leaving its ``with`` block) kills the program if it still runs.

The WebSocket client is `websockets <https://websockets.readthedocs.io>`_ (maintained since
2013, no dependencies of its own, typed): it is the one library with both a threaded sync client
and an asyncio client, each of which connects over a Unix socket (``unix_connect``) as well as
TCP, so both SDK clients reach the daemon the same way. (``wsproto`` is only a protocol state
machine: the SDK would carry its own I/O loops; httpx has no WebSocket support.)

Example::

    with vm.pty(rows=24, cols=80) as term:
        term.resize(40, 120)
        term.write("stty size; exit 3\\n")
        screen = term.read_until(b"40 120")
        assert term.wait().exit_code == 3
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.asyncio.client import unix_connect as async_unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect, unix_connect

from . import _http
from .endpoint import Endpoint
from .errors import FirepitError, TransportError, error_from_code
from .sandbox_models import ExitStatus

__all__ = ["AsyncPty", "Pty"]


def _uri(endpoint: Endpoint, path: str) -> str:
    if endpoint.url is not None:
        return endpoint.url.replace("http://", "ws://", 1).rstrip("/") + path
    return f"ws://localhost{path}"


def _refused(error: InvalidStatus) -> FirepitError:
    status = error.response.status_code
    try:
        body = json.loads(error.response.body or b"")
        return error_from_code(str(body["error"]), str(body.get("message", "")), status)
    except (ValueError, KeyError, TypeError):
        return FirepitError("unexpected_response", f"the daemon refused the terminal: {error}", status=status)


def _control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


class _State:
    """What both terminals track: the program's pid and exit, and server text messages."""

    pid: int | None = None
    exit_status: ExitStatus | None = None
    done = False
    error: FirepitError | None = None
    """Why the terminal ended without an exit status (an ``error`` message), raised again by
    ``wait``."""
    pending = b""
    """Output read but not handed out yet (after a ``read_until``'s marker, or before its timeout)."""

    def split(self, seen: bytes, needle: bytes) -> bytes:
        """``seen`` up to and including ``needle``; the rest is kept for the next read."""
        end = seen.index(needle) + len(needle)
        self.pending = seen[end:]
        return seen[:end]

    def on_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError as error:
            raise FirepitError(
                "unexpected_response", f"a terminal message is not JSON: {text[:200]!r}"
            ) from error
        if not isinstance(event, dict):
            raise FirepitError("unexpected_response", f"a terminal message is not an object: {text[:200]!r}")
        kind = event.get("type")
        try:
            if kind == "started":
                self.pid = int(event["pid"])
            elif kind == "exit":
                self.exit_status = ExitStatus.from_json(event)
                self.done = True
        except (KeyError, ValueError, TypeError) as error:
            raise FirepitError(
                "unexpected_response", f"a malformed terminal {kind} message: {error}"
            ) from error
        if kind == "error":
            self.done = True
            self.error = error_from_code(str(event.get("error")), str(event.get("message", "")))
            raise self.error

    def status(self) -> ExitStatus:
        """The exit status once the terminal ended, else why there is none."""
        if self.exit_status is not None:
            return self.exit_status
        if self.error is not None:
            raise self.error
        raise TransportError("transport", "the terminal ended without an exit status")

    def closed(self) -> None:
        self.done = True
        if self.exit_status is None:
            raise TransportError("transport", "the terminal closed without an exit status")


class Pty:
    """A terminal in a VM (sync). Get one from :meth:`firepit.Lease.pty`.

    Attributes:
        pid: the program's guest process id (once started).
        exit_status: its :class:`firepit.ExitStatus` once it exited, else ``None``.
    """

    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection
        self._state = _State()

    @classmethod
    def connect(cls, endpoint: Endpoint, path: str, timeout: float) -> Pty:
        """Opens the WebSocket at ``path`` (the daemon starts the program first)."""
        headers = _http.headers(endpoint)
        try:
            # Entered as a context manager (and closed by `close`): what websockets >= 17.1 asks
            # of a sync connection, and what older versions accept too.
            if endpoint.socket is not None:
                ws = unix_connect(
                    str(endpoint.socket),
                    _uri(endpoint, path),
                    additional_headers=headers,
                    open_timeout=timeout,
                    max_size=None,
                ).__enter__()
            else:
                ws = connect(
                    _uri(endpoint, path), additional_headers=headers, open_timeout=timeout, max_size=None
                ).__enter__()
        except InvalidStatus as error:
            raise _refused(error) from error
        except (OSError, WebSocketException, TimeoutError) as error:
            raise TransportError("transport", f"cannot open a terminal at {endpoint}: {error!r}") from error
        return cls(ws)

    @property
    def pid(self) -> int | None:
        return self._state.pid

    @property
    def exit_status(self) -> ExitStatus | None:
        return self._state.exit_status

    def write(self, data: bytes | str) -> None:
        """Types ``data`` (text as UTF-8; Ctrl-C is ``b"\\x03"``, Ctrl-D ``b"\\x04"``)."""
        self._ws.send(data.encode() if isinstance(data, str) else bytes(data))

    def resize(self, rows: int, cols: int) -> None:
        """Resizes the terminal (the program gets SIGWINCH)."""
        self._ws.send(_control("resize", rows=rows, cols=cols))

    def signal(self, signal: int | str) -> None:
        """Sends a signal (number or name) to the terminal's foreground process group."""
        self._ws.send(_control("signal", signal=signal))

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next output, waiting at most ``timeout`` seconds (:class:`TimeoutError`);
        ``None`` once the program exited."""
        if self._state.pending:
            chunk, self._state.pending = self._state.pending, b""
            return chunk
        while not self._state.done:
            try:
                message = self._ws.recv(timeout)
            except ConnectionClosed:
                self._state.closed()
                return None
            if isinstance(message, bytes):
                return message
            self._state.on_text(message)
        return None

    def read_until(self, marker: bytes | str, timeout: float = 30.0) -> bytes:
        """Output up to and including ``marker`` (:class:`TimeoutError` if it does not come in
        time; what was read stays for the next read)."""
        needle = marker.encode() if isinstance(marker, str) else marker
        deadline = time.monotonic() + timeout
        seen = b""
        try:
            while needle not in seen:
                chunk = self.read(max(0.0, deadline - time.monotonic()))
                if chunk is None:
                    raise TimeoutError(f"the program exited before {marker!r}; output: {seen[-500:]!r}")
                seen += chunk
        except TimeoutError as error:
            self._state.pending = seen  # nothing read is lost: the next read starts with it
            raise TimeoutError(f"no {marker!r} within {timeout} s; the output: {seen[-300:]!r}") from error
        return self._state.split(seen, needle)

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Reads (and drops) output until the program exits; its status. Raises
        :class:`TimeoutError` after ``timeout`` seconds, or why the terminal ended without one
        (:class:`firepit.LeaseEnded`, :class:`firepit.ShuttingDown`, ...)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.read(None if deadline is None else max(0.0, deadline - time.monotonic())) is not None:
            pass
        return self._state.status()

    def close(self) -> None:
        """Closes the terminal (the program is killed if it still runs)."""
        self._ws.close()

    def __enter__(self) -> Pty:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncPty:
    """A terminal in a VM (asyncio); the methods of :class:`Pty` with ``await``. Get one with
    ``await vm.pty()`` or ``async with await vm.pty() as term:``."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._ws = connection
        self._state = _State()

    @classmethod
    async def connect(cls, endpoint: Endpoint, path: str, timeout: float) -> AsyncPty:
        """Opens the WebSocket at ``path``."""
        headers = _http.headers(endpoint)
        try:
            if endpoint.socket is not None:
                ws = await async_unix_connect(
                    str(endpoint.socket),
                    _uri(endpoint, path),
                    additional_headers=headers,
                    open_timeout=timeout,
                    max_size=None,
                )
            else:
                ws = await async_connect(
                    _uri(endpoint, path), additional_headers=headers, open_timeout=timeout, max_size=None
                )
        except InvalidStatus as error:
            raise _refused(error) from error
        except (OSError, WebSocketException, TimeoutError) as error:
            raise TransportError("transport", f"cannot open a terminal at {endpoint}: {error!r}") from error
        return cls(ws)

    @property
    def pid(self) -> int | None:
        return self._state.pid

    @property
    def exit_status(self) -> ExitStatus | None:
        return self._state.exit_status

    async def write(self, data: bytes | str) -> None:
        """See :meth:`Pty.write`."""
        await self._ws.send(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, rows: int, cols: int) -> None:
        """See :meth:`Pty.resize`."""
        await self._ws.send(_control("resize", rows=rows, cols=cols))

    async def signal(self, signal: int | str) -> None:
        """See :meth:`Pty.signal`."""
        await self._ws.send(_control("signal", signal=signal))

    async def read(self, timeout: float | None = None) -> bytes | None:
        """See :meth:`Pty.read`."""
        if self._state.pending:
            chunk, self._state.pending = self._state.pending, b""
            return chunk
        while not self._state.done:
            try:
                message = await asyncio.wait_for(self._ws.recv(), timeout)
            except ConnectionClosed:
                self._state.closed()
                return None
            if isinstance(message, bytes):
                return message
            self._state.on_text(message)
        return None

    async def read_until(self, marker: bytes | str, timeout: float = 30.0) -> bytes:
        """See :meth:`Pty.read_until`."""
        needle = marker.encode() if isinstance(marker, str) else marker
        deadline = time.monotonic() + timeout
        seen = b""
        try:
            while needle not in seen:
                chunk = await self.read(max(0.0, deadline - time.monotonic()))
                if chunk is None:
                    raise TimeoutError(f"the program exited before {marker!r}; output: {seen[-500:]!r}")
                seen += chunk
        except TimeoutError as error:
            self._state.pending = seen
            raise TimeoutError(f"no {marker!r} within {timeout} s; the output: {seen[-300:]!r}") from error
        return self._state.split(seen, needle)

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """See :meth:`Pty.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (
            await self.read(None if deadline is None else max(0.0, deadline - time.monotonic())) is not None
        ):
            pass
        return self._state.status()

    async def close(self) -> None:
        """See :meth:`Pty.close`."""
        await self._ws.close()

    async def __aenter__(self) -> AsyncPty:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
