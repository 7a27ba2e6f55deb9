"""What a lease's sandbox methods need of the client they go through, as typing protocols.

:class:`firepit.Client` and :class:`firepit.AsyncClient` satisfy them; the sandbox mixins
(``_sync_sandbox``, ``_async_sandbox``) are typed against these instead of importing the clients,
which import the mixins.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import httpx

from ._calls import Call
from .endpoint import Endpoint

T = TypeVar("T")


class SyncTransport(Protocol):
    """The sync client as its leases use it: one call, a raw HTTP client, a timeout, an endpoint."""

    endpoint: Endpoint
    _http: httpx.Client
    _timeout: float

    def _call(self, call: Call[T]) -> T: ...


class AsyncTransport(Protocol):
    """The asyncio client as its leases use it (see :class:`SyncTransport`)."""

    endpoint: Endpoint
    _http: httpx.AsyncClient
    _timeout: float

    async def _call(self, call: Call[T]) -> T: ...
