"""The asyncio client: :class:`AsyncClient` and the :class:`AsyncLease` it hands out.

The same surface as :class:`firepit.Client`, with ``await``: one keep-alive connection pool to
one daemon, shared by the tasks of one event loop. Every method maps to one endpoint of the
daemon's API (the requests and answers are built in one place for both clients); failures raise
:class:`firepit.FirepitError` subclasses.

Example::

    import asyncio
    import firepit

    async def main() -> None:
        async with firepit.AsyncClient() as client:
            async with client.lease("default") as vm:
                result = await vm.exec(["uname", "-r"])
                print(result.stdout_text)

    asyncio.run(main())
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import PurePath
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _calls, _http, snapshots
from ._async_sandbox import AsyncSandbox
from ._calls import Egress, Seconds
from ._lease import LeaseBase, release_failed_on_exit
from .client import DEFAULT_TIMEOUT, DEFAULT_WAIT
from .endpoint import Endpoint, resolve_endpoint
from .errors import FirepitError, error_from_response
from .lease_models import LeaseView
from .models import ExecResult, Health, LeaseInfo, Pools, PortForward
from .snapshots import Snapshot

__all__ = ["AsyncClient", "AsyncLease", "AsyncLeaseRequest"]

T = TypeVar("T")


class AsyncClient:
    """An asyncio client of one firepit daemon; arguments as :class:`firepit.Client`.

    Example::

        async with firepit.AsyncClient(socket="/run/firepit/firepit.sock") as client:
            print((await client.pools()).shape("default").ready)
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoint: Endpoint = resolve_endpoint(socket, url, token)
        """Where this client connects."""
        self._timeout = timeout
        uds = str(self.endpoint.socket) if self.endpoint.socket is not None else None
        self._http = httpx.AsyncClient(
            base_url=_http.base_url(self.endpoint),
            transport=httpx.AsyncHTTPTransport(uds=uds),
            headers=_http.headers(self.endpoint),
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"<AsyncClient {self.endpoint}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the kept-alive connections (leases stay valid: release them first)."""
        await self._http.aclose()

    async def _call(self, call: _calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                json=call.body,
                headers=call.headers,
                timeout=_http.timeout(self._timeout, call.server_time),
            )
        except httpx.TransportError as error:
            raise _http.transport_error(self.endpoint, error) from error
        return _calls.finish(call, response)

    def lease(
        self,
        shape: str | None = "default",
        *,
        wait: Seconds = DEFAULT_WAIT,
        ttl: Seconds | None = None,
        idempotency_key: str | None = None,
        egress: Egress | None = None,
        cpus: int | None = None,
        memory_mb: int | None = None,
        disk_mb: int | None = None,
    ) -> AsyncLeaseRequest:
        """Leases a warm VM of ``shape``; arguments and errors as :meth:`firepit.Client.lease`.

        The result is awaited (``vm = await client.lease()``, release it yourself) or entered
        (``async with client.lease() as vm:``, released when the block ends, by exception too).

        Example::

            async with client.lease("default", wait=10) as vm:
                await vm.exec(["true"])
        """
        return AsyncLeaseRequest(
            self,
            _calls.acquire(
                _calls.shape_or_sizes(shape, cpus, memory_mb, disk_mb),
                wait,
                ttl,
                idempotency_key,
                egress,
                cpus=cpus,
                memory_mb=memory_mb,
                disk_mb=disk_mb,
            ),
        )

    def lease_from_snapshot(
        self,
        snapshot_id: str,
        *,
        ttl: Seconds | None = None,
        metadata: Mapping[str, str] | None = None,
        auto_resume: bool = False,
    ) -> AsyncLeaseRequest:
        """Starts a lease from a snapshot; see :meth:`firepit.Client.lease_from_snapshot`. Awaited
        or entered, as :meth:`lease`."""
        call = _calls.acquire(
            None, 0, ttl, None, metadata=metadata, auto_resume=auto_resume, snapshot=snapshot_id
        )
        return AsyncLeaseRequest(self, call)

    async def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first (``GET /v1/snapshots``)."""
        return await self._call(snapshots.list_snapshots())

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Deletes a snapshot and its files; see :meth:`firepit.Client.delete_snapshot`."""
        await self._call(snapshots.delete_snapshot(snapshot_id))

    async def pools(self) -> Pools:
        """Every shape's pool (``GET /v1/pools``); see :meth:`firepit.Client.pools`."""
        return await self._call(_calls.pools())

    async def register_shape(
        self,
        name: str,
        image: str | os.PathLike[str],
        *,
        cpus: int | None = None,
        memory_mb: int | None = None,
        depth_low: int | None = None,
        depth_high: int | None = None,
        max_age: Seconds | None = None,
        fill: str | None = None,
        health_check: bool | None = None,
        network: str | Mapping[str, Any] | None = None,
        pause_idle: bool | None = None,
        warm_up: bool | None = None,
        disk_mb: int | None = None,
        warm_up_argv: Sequence[str] | None = None,
    ) -> None:
        """Registers a shape at run time (``PUT /v1/shapes/{name}``); see
        :meth:`firepit.Client.register_shape`."""
        await self._call(
            _calls.register_shape(
                name,
                image,
                cpus,
                memory_mb,
                depth_low,
                depth_high,
                max_age,
                fill,
                health_check,
                network,
                pause_idle,
                warm_up,
                disk_mb,
                warm_up_argv,
            )
        )

    async def unregister_shape(self, name: str) -> None:
        """Unregisters a shape (``DELETE /v1/shapes/{name}``); see
        :meth:`firepit.Client.unregister_shape`."""
        await self._call(_calls.unregister_shape(name))

    async def healthz(self) -> Health:
        """``GET /healthz``: ``Health(status="ok")``, else :class:`firepit.ShuttingDown`."""
        return await self._call(_calls.healthz())

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        return await self._call(_calls.metrics())

    async def openapi(self) -> dict[str, Any]:
        """``GET /v1/openapi.json``: the API's OpenAPI 3 document."""
        return await self._call(_calls.openapi())

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Sends one raw request; see :meth:`firepit.Client.request`."""
        try:
            return await self._http.request(
                method, path, json=json, content=content, headers=headers, timeout=timeout or self._timeout
            )
        except httpx.TransportError as error:
            raise _http.transport_error(self.endpoint, error) from error

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Yields an answer before its body is read (``aiter_bytes()``, ``aiter_lines()``); an
        error answer raises its typed error. See :meth:`firepit.Client.stream`.

        Example::

            async with client.stream("GET", "/metrics") as response:
                async for line in response.aiter_lines():
                    print(line)
        """
        try:
            async with self._http.stream(
                method, path, json=json, content=content, headers=headers, timeout=timeout or self._timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as error:
            raise _http.transport_error(self.endpoint, error) from error


class AsyncLeaseRequest:
    """What :meth:`AsyncClient.lease` returns: await it for an :class:`AsyncLease`, or enter it
    with ``async with`` to have the lease released when the block ends."""

    def __init__(self, client: AsyncClient, call: _calls.Call[LeaseInfo]) -> None:
        self._client = client
        self._call = call
        self._lease: AsyncLease | None = None

    async def _acquire(self) -> AsyncLease:
        return AsyncLease(self._client, await self._client._call(self._call))

    def __await__(self) -> Generator[Any, None, AsyncLease]:
        return self._acquire().__await__()

    async def __aenter__(self) -> AsyncLease:
        self._lease = await self._acquire()
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lease is not None:
            await self._lease.__aexit__(exc_type, exc, tb)


class AsyncLease(LeaseBase, AsyncSandbox):
    """A VM leased from the daemon, until :meth:`release` (or the end of an ``async with``
    block); the asyncio twin of :class:`firepit.Lease`, with the same sandbox methods (awaited;
    streams are ``async for`` / ``async with``). ``AsyncLease(client, info)`` wraps a lease
    acquired elsewhere.

    Example::

        async with client.lease("default") as vm:
            assert (await vm.exec(["cat"], stdin=b"hi")).stdout == b"hi"
            await vm.write_file("/tmp/note.txt", "hi\n")
            async for event in vm.exec_stream(["cat", "/tmp/note.txt"]):
                print(event)
        assert vm.released
    """

    client: AsyncClient

    def __init__(self, client: AsyncClient, info: LeaseInfo) -> None:
        super().__init__(info)
        self.client = client
        """The client this lease was acquired through."""

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._released:
            return
        try:
            await self.release()
        except FirepitError as error:
            if not release_failed_on_exit(self.id, error, exc is not None):
                raise
            self._released = True

    async def forward_port(self, guest_port: int) -> PortForward:
        """Makes the guest's TCP ``guest_port`` reachable from the host (``POST
        /v1/leases/{id}/ports``); see :meth:`firepit.Lease.forward_port`."""
        return await self.client._call(_calls.forward_port(self.id, guest_port))

    async def remove_forward(self, guest_port: int) -> None:
        """Closes the forward to the guest's ``guest_port``; see :meth:`firepit.Lease.remove_forward`."""
        await self.client._call(_calls.remove_forward(self.id, guest_port))

    async def ports(self) -> list[PortForward]:
        """The lease's port forwards, oldest first (``GET /v1/leases/{id}/ports``)."""
        return await self.client._call(_calls.ports(self.id))

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
        stdin: bytes | bytearray | memoryview | str | None = None,
        timeout: Seconds | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult:
        """Runs a program in the VM to completion (``POST /v1/leases/{id}/exec``); arguments,
        result and errors as :meth:`firepit.Lease.exec`.

        Example::

            result = await vm.exec(["sh", "-c", "echo hi"], timeout=10)
            assert result.stdout == b"hi\\n"
        """
        return await self.client._call(
            _calls.exec_(self.id, argv, env, cwd, stdin, timeout, max_output_bytes)
        )

    async def renew(self, ttl: Seconds | None = None) -> LeaseInfo:
        """Extends the lease to ``ttl`` from now (``POST /v1/leases/{id}/renew``); see
        :meth:`firepit.Lease.renew`."""
        self._info = await self.client._call(_calls.renew(self.id, ttl))
        return self._info

    async def pause(self) -> LeaseView:
        """Pauses the lease (``POST /v1/leases/{id}/pause``); see :meth:`firepit.Lease.pause`."""
        return await self.client._call(_calls.pause(self.id))

    async def resume(self) -> LeaseView:
        """Resumes a paused lease (``POST /v1/leases/{id}/resume``); see
        :meth:`firepit.Lease.resume`."""
        return await self.client._call(_calls.resume(self.id))

    async def snapshot(self) -> Snapshot:
        """Snapshots the running lease; see :meth:`firepit.Lease.snapshot`."""
        return await self.client._call(snapshots.snapshot_lease(self.id))

    async def fork(self, count: int, *, ttl: Seconds | None = None) -> list[AsyncLease | FirepitError]:
        """Forks the running lease into ``count`` new leases, each succeeding or failing on its
        own; see :meth:`firepit.Lease.fork`."""
        outcomes = await self.client._call(snapshots.fork(self.id, count, ttl))
        return [AsyncLease(self.client, o) if isinstance(o, LeaseInfo) else o for o in outcomes]

    async def release(self) -> None:
        """Gives the VM back (``DELETE /v1/leases/{id}``); see :meth:`firepit.Lease.release`."""
        if self._released:
            return
        await self.client._call(_calls.release(self.id))
        self._released = True
