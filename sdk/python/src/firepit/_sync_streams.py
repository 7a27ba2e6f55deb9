"""The sync client's streamed answers: a guest file being read (:class:`FileReader`) and the
events of a streamed exec or a followed output (:class:`EventStream`). Both hold one HTTP
exchange open until they are read to the end or closed; closing an event stream early ends the
exchange, and the daemon then kills an attached command.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import ExitStack
from types import TracebackType

import httpx

from . import _http
from . import _sandbox_calls as calls
from .endpoint import Endpoint
from .sandbox_models import StreamEvent

__all__ = ["EventStream", "FileReader"]


class FileReader:
    """A guest file being read (from ``vm.read_file``): iterate it for chunks as they arrive, or
    ``read()`` it. A transfer that breaks part-way raises, never ends short. Close it (or use
    ``with``) to stop early.

    Attributes ``size`` (when the read started), ``mode`` and ``kind`` come from the daemon.
    """

    def __init__(self, response: httpx.Response, stack: ExitStack, endpoint: Endpoint) -> None:
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

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes(calls.CHUNK)
        except httpx.TransportError as error:
            raise _http.transport_error(self._endpoint, error) from error

    def read(self) -> bytes:
        """All the (remaining) bytes."""
        return b"".join(self)

    def close(self) -> None:
        """Stops the transfer."""
        self._stack.close()

    def __enter__(self) -> FileReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventStream(Iterator[StreamEvent]):
    """The events of a streamed exec or a followed output, as they arrive: iterate it (a
    ``for`` loop), and close it (or use ``with``) to leave early, which ends the exchange (a
    streamed exec's command is then killed). An ``error`` event raises its typed error
    (:class:`firepit.LeaseEnded`, :class:`firepit.VmUnreachable`, ...).

    Example::

        with vm.exec_stream(["sh", "-c", "echo up; sleep 100"]) as events:
            for event in events:
                if isinstance(event, firepit.Output):
                    break          # the command is killed when the block ends
    """

    def __init__(self, response: httpx.Response, stack: ExitStack, endpoint: Endpoint) -> None:
        self._stack = stack
        # The generator does not refer back to this object, so dropping the stream (a `break`
        # out of its `for` loop) frees it at once, which ends the exchange.
        self._events = self._parse(response, stack, endpoint)

    @staticmethod
    def _parse(
        response: httpx.Response, stack: ExitStack, endpoint: Endpoint
    ) -> Generator[StreamEvent, None, None]:
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield calls.parse_event(line)
        except httpx.TransportError as error:
            raise _http.transport_error(endpoint, error) from error
        finally:
            stack.close()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        """Ends the exchange (idempotent)."""
        self._events.close()
        self._stack.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned stream (never iterated to its end) must not keep the exchange, and with it
        # an attached command, alive.
        self._stack.close()
