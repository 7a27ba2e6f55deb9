"""The asyncio client's streamed answers: a guest file being read (:class:`AsyncFileReader`) and
the events of a streamed exec or a followed output (:class:`AsyncEventStream`), the twins of
``_sync_streams.py``. Each holds one HTTP exchange open until it is read to the end or closed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType

import httpx

from . import _http
from . import _sandbox_calls as calls
from .endpoint import Endpoint
from .sandbox_models import StreamEvent

__all__ = ["AsyncEventStream", "AsyncFileReader", "Opener"]

Opener = Callable[[], Awaitable[tuple[httpx.Response, AsyncExitStack]]]
"""Sends a streamed request: its answer (already checked for an error status) and what closes it."""


class AsyncFileReader:
    """A guest file being read (from ``await vm.read_file(...)``): ``async for chunk in reader``
    or ``await reader.read()``; ``size``, ``mode``, ``kind`` as :class:`firepit.FileReader`."""

    def __init__(self, response: httpx.Response, stack: AsyncExitStack, endpoint: Endpoint) -> None:
        self._response = response
        self._stack = stack
        self._endpoint = endpoint
        headers = response.headers
        self.size: int | None = (
            int(headers["x-firepit-file-size"]) if "x-firepit-file-size" in headers else None
        )
        self.mode: int | None = (
            int(headers["x-firepit-file-mode"], 8) if "x-firepit-file-mode" in headers else None
        )
        self.kind: str | None = headers.get("x-firepit-file-kind")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes(calls.CHUNK):
                yield chunk
        except httpx.TransportError as error:
            raise _http.transport_error(self._endpoint, error) from error

    async def read(self) -> bytes:
        """All the (remaining) bytes."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Stops the transfer."""
        await self._stack.aclose()

    async def __aenter__(self) -> AsyncFileReader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncEventStream(AsyncIterator[StreamEvent]):
    """The events of a streamed exec or a followed output (asyncio): ``async for event in
    stream`` sends the request when the iteration starts; ``async with stream as events:`` sends
    it on entering (so :class:`firepit.ExecRefused` is raised there) and ends the exchange on
    leaving, early too (a streamed exec's command is then killed). An abandoned stream is closed
    by the event loop once it is garbage-collected.

    Example::

        async with vm.exec_stream(["sh", "-c", "echo up; sleep 100"]) as events:
            async for event in events:
                if isinstance(event, firepit.Output):
                    break          # the command is killed when the block ends
    """

    def __init__(self, open_: Opener, endpoint: Endpoint) -> None:
        self._events = self._run(open_, endpoint)
        self._started = False

    @staticmethod
    async def _run(open_: Opener, endpoint: Endpoint) -> AsyncGenerator[StreamEvent | None, None]:
        response, stack = await open_()
        async with stack:
            yield None  # the request was accepted
            try:
                async for line in response.aiter_lines():
                    if line.strip():
                        yield calls.parse_event(line)
            except httpx.TransportError as error:
                raise _http.transport_error(endpoint, error) from error

    async def start(self) -> AsyncEventStream:
        """Sends the request now (iterating or entering does it otherwise); raises its typed error."""
        if not self._started:
            self._started = True
            await self._events.__anext__()
        return self

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        await self.start()
        event = await self._events.__anext__()
        if event is None:  # only the first item is None, and `start` took it
            raise RuntimeError("the event stream yielded its start marker twice")
        return event

    async def aclose(self) -> None:
        """Ends the exchange (idempotent)."""
        await self._events.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
