"""The synchronous client: :class:`Client` and the :class:`Lease` it hands out.

One :class:`Client` holds one keep-alive connection pool to one daemon and is safe to share
between threads. Every method maps to one endpoint of the daemon's API; failures raise
:class:`firepit.FirepitError` subclasses. :class:`firepit.AsyncClient` has the same surface for
asyncio.

Example::

    import firepit

    with firepit.Client() as client:
        with client.lease("default") as vm:
            result = vm.exec(["uname", "-r"])
            print(result.stdout_text)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import PurePath
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _calls, _http, snapshots
from ._calls import Egress, Seconds
from ._lease import LeaseBase, release_failed_on_exit
from ._sync_sandbox import SyncSandbox
from .endpoint import Endpoint, resolve_endpoint
from .errors import FirepitError, LeaseEnded, error_from_response
from .lease_models import Event, LeaseView
from .models import ExecResult, Health, LeaseInfo, Pools, PortForward
from .snapshots import Snapshot

__all__ = ["Client", "Lease"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
"""Seconds to connect and to wait for an answer, on top of any wait the call asks the daemon for."""

DEFAULT_WAIT = 30.0
"""Seconds an acquire waits for a ready VM by default (as ``firepit lease acquire``)."""


class Client:
    """A client of one firepit daemon, over its Unix socket or TCP with a bearer token.

    Args:
        socket: the daemon's Unix socket.
        url: the daemon's ``http://host:port`` instead (not with ``socket``).
        token: the bearer token for ``url`` (default ``$FIREPIT_TOKEN`` or ``$FIREPIT_TOKEN_FILE``).
        timeout: seconds to connect and to wait for an answer, on top of the time a call asks the
            daemon to take (an acquire's ``wait``, a command's ``timeout``).

    With neither ``socket`` nor ``url``, ``$FIREPIT_SOCKET`` or ``$FIREPIT_URL`` name the daemon,
    else the daemon's default socket (see :func:`firepit.resolve_endpoint`). Nothing connects
    until the first call.

    Example::

        with firepit.Client(url="http://127.0.0.1:7070", token=token) as client:
            print(client.pools().shape("default").ready)
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
        self._http = httpx.Client(
            base_url=_http.base_url(self.endpoint),
            transport=httpx.HTTPTransport(uds=uds),
            headers=_http.headers(self.endpoint),
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"<Client {self.endpoint}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the kept-alive connections (leases stay valid: release them first)."""
        self._http.close()

    def _call(self, call: _calls.Call[T]) -> T:
        try:
            response = self._http.request(
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
        metadata: Mapping[str, str] | None = None,
        auto_resume: bool = False,
        on_expiry: str | None = None,
    ) -> Lease:
        """Leases a warm VM of ``shape`` (``POST /v1/leases``).

        Args:
            shape: the shape to lease a VM of.
            wait: how long the daemon may wait for a ready VM (0: fail at once with
                :class:`firepit.Exhausted` when none is ready).
            ttl: the lease's lifetime from now (default: the daemon's ``default_ttl_secs``); a
                lease neither renewed nor released is reclaimed at expiry.
            idempotency_key: a retry with the same key returns the same lease while it lives.
            egress: narrows the shape's egress policy for this lease: ``"deny"``, or entries
                within the shape's (``["10.1.0.0/16:443", "pypi.org:443"]``); anything wider
                raises :class:`firepit.EgressWidens` before a VM is taken.
            cpus, memory_mb, disk_mb: instead of a shape (leave ``shape`` at its default):
                lease the smallest registered shape with at least these; none covers them:
                :class:`firepit.NoShapeFits`, naming the largest.
            metadata: labels of the lease (at most 32; over the limits:
                :class:`firepit.BadMetadata`): in its views and events, a filter of :meth:`leases`.
            auto_resume: a call on the lease while it is paused resumes it first.
            on_expiry: what the TTL running out does: ``"destroy"`` (default) or ``"pause"``.

        Returns a :class:`Lease`, also a context manager that releases the VM when the block
        ends, by exception too.

        Raises :class:`firepit.UnknownShape`, :class:`firepit.Exhausted`,
        :class:`firepit.BadTtl`, :class:`firepit.IdempotencyConflict`,
        :class:`firepit.ShuttingDown`, :class:`firepit.EgressWidens`,
        :class:`firepit.NetworkDisabled`, :class:`firepit.NoShapeFits`,
        :class:`firepit.ConnectError`.

        Example::

            with client.lease("default", wait=10, ttl=600) as vm:
                vm.exec(["true"])
            with client.lease(cpus=2, memory_mb=1024) as vm:  # the smallest shape that large
                vm.exec(["nproc"])
        """
        return Lease(
            self,
            self._call(
                _calls.acquire(
                    _calls.shape_or_sizes(shape, cpus, memory_mb, disk_mb),
                    wait,
                    ttl,
                    idempotency_key,
                    egress,
                    cpus=cpus,
                    memory_mb=memory_mb,
                    disk_mb=disk_mb,
                    metadata=metadata,
                    auto_resume=auto_resume,
                    on_expiry=on_expiry,
                )
            ),
        )

    def lease_from_snapshot(
        self,
        snapshot_id: str,
        *,
        ttl: Seconds | None = None,
        metadata: Mapping[str, str] | None = None,
        auto_resume: bool = False,
    ) -> Lease:
        """Starts a lease from a snapshot (``POST /v1/leases {"snapshot": ID}``): its files and
        processes as they were when :meth:`Lease.snapshot` took it, with an identity of its own.
        Raises :class:`firepit.SnapshotNotFound`.

        Example::

            snapshot = vm.snapshot()
            with client.lease_from_snapshot(snapshot.id) as copy:
                copy.exec(["cat", "/root/prepared"])
        """
        call = _calls.acquire(
            None, 0, ttl, None, metadata=metadata, auto_resume=auto_resume, snapshot=snapshot_id
        )
        return Lease(self, self._call(call))

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first (``GET /v1/snapshots``)."""
        return self._call(snapshots.list_snapshots())

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Deletes a snapshot and its files (``DELETE /v1/snapshots/{id}``); leases started from
        it run on. Raises :class:`firepit.SnapshotNotFound`."""
        self._call(snapshots.delete_snapshot(snapshot_id))

    def leases(
        self, *, state: str | None = None, metadata: Mapping[str, str] | None = None, shape: str | None = None
    ) -> list[LeaseView]:
        """Leases: live ones oldest first, then recently ended ones (``GET /v1/leases``), those in
        ``state`` (``running``, ``paused``, ``ended``) carrying every label of ``metadata``.

        Example::

            for view in client.leases(state="running", metadata={"job": "nightly"}):
                print(view.id, view.expires_at)
        """
        return self._call(_calls.leases(state, metadata, shape))

    def lease_view(self, lease_id: str) -> LeaseView:
        """One lease, live or ended with its ``end_reason`` (``GET /v1/leases/{id}``); raises
        :class:`firepit.LeaseNotFound` for one the daemon does not know (or no longer)."""
        return self._call(_calls.lease_view(lease_id))

    def attach(self, lease_id: str) -> Lease:
        """A handle on a live lease acquired elsewhere (another process, an earlier run): exec,
        files, processes, terminals, release. Raises :class:`firepit.LeaseEnded` for an ended one.

        Example::

            vm = client.attach(lease_id)
            vm.exec(["true"])
        """
        view = self.lease_view(lease_id)
        if view.state == "ended":
            raise LeaseEnded(
                "lease_ended", f"lease {lease_id} ended ({view.end_reason}): acquire another", status=410
            )
        return Lease(
            self, LeaseInfo(id=view.id, vm_id=view.vm_id, shape=view.shape, expires_at=view.expires_at)
        )

    def events(
        self,
        *,
        kinds: Sequence[str] | None = None,
        lease_id: str | None = None,
        after: int | str | None = None,
    ) -> Iterator[Event]:
        """The daemon's events as they happen (``GET /v1/events``, Server-Sent Events), of
        ``kinds`` (``lease.created``, ``lease.ended``, ...) about ``lease_id``; with ``after``,
        first those after that point the daemon still keeps (an event's ``resume_id``, which
        also resumes a gateway's merged stream; ``0``: everything kept). Ends when the daemon
        stops.

        Example::

            for event in client.events(kinds=["lease.ended"], after=0):
                print(event.id, event.lease_id, event.reason)
        """
        path = _calls.events_path(kinds, lease_id, after)
        with self.stream("GET", path, timeout=None) as response:
            data: list[str] = []
            stream_id: str | None = None
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("id:"):
                    stream_id = line[3:].removeprefix(" ")
                elif not line and data:
                    event = Event.from_json(json.loads("\n".join(data)))
                    yield dataclasses.replace(event, resume_id=stream_id)
                    data = []

    def pools(self) -> Pools:
        """Every shape's pool: ready, filling and leased VMs, depth, failures (``GET /v1/pools``)."""
        return self._call(_calls.pools())

    def register_shape(
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
        """Registers a shape at run time; its pool starts filling at once (``PUT /v1/shapes/{name}``).

        ``image`` is a guest image directory on the daemon's host; ``fill`` is ``"snapshot"``
        or ``"cold"``; ``max_age`` replaces ready VMs older than that; ``network`` is ``"none"``,
        ``"nat"`` or ``{"mode": "nat", "egress": [...], "host_ports": [...]}``; ``pause_idle``
        stops the vCPUs of VMs waiting in the pool; ``warm_up`` runs a first command in each new
        VM so the user's first one is as fast as later ones, and ``warm_up_argv`` adds a command
        from the image to it (e.g. ``["/bin/bash", "-lc", "true"]``: the programs it runs start
        faster in each VM's first command too); ``disk_mb`` bounds what each VM may write to its
        disk. Arguments left ``None`` take the
        daemon's defaults (1 CPU, 256 MiB, depth 1..2, snapshot fill, health check, idle VMs
        paused, warm-up on). Raises :class:`firepit.ShapeExists` or :class:`firepit.InvalidShape`.

        Example::

            client.register_shape("big", "/var/lib/firepit/image", cpus=2, memory_mb=1024)
        """
        self._call(
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

    def unregister_shape(self, name: str) -> None:
        """Unregisters a shape; its ready VMs are destroyed, leased ones stay valid until released
        (``DELETE /v1/shapes/{name}``). Raises :class:`firepit.UnknownShape`."""
        self._call(_calls.unregister_shape(name))

    def healthz(self) -> Health:
        """``GET /healthz``: ``Health(status="ok")`` while the daemon serves, else
        :class:`firepit.ShuttingDown`."""
        return self._call(_calls.healthz())

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        return self._call(_calls.metrics())

    def openapi(self) -> dict[str, Any]:
        """``GET /v1/openapi.json``: the API's OpenAPI 3 document."""
        return self._call(_calls.openapi())

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Sends one raw request and returns the answer whatever its status, for endpoints this
        SDK has no method for yet; :func:`firepit.error_from_response` types an error answer.

        Example::

            response = client.request("GET", "/v1/pools")
            assert response.status_code == 200
        """
        try:
            return self._http.request(
                method, path, json=json, content=content, headers=headers, timeout=timeout or self._timeout
            )
        except httpx.TransportError as error:
            raise _http.transport_error(self.endpoint, error) from error

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """Sends one request and yields its answer before the body is read, to consume it
        piecewise (``iter_bytes()``, ``iter_lines()``); an error answer raises its typed
        :class:`firepit.FirepitError` instead. ``timeout`` bounds each read (default: the
        client's).

        Example::

            with client.stream("GET", "/metrics") as response:
                for line in response.iter_lines():
                    print(line)
        """
        try:
            with self._http.stream(
                method, path, json=json, content=content, headers=headers, timeout=timeout or self._timeout
            ) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as error:
            raise _http.transport_error(self.endpoint, error) from error


class Lease(LeaseBase, SyncSandbox):
    """A VM leased from the daemon, until :meth:`release` (or the end of a ``with`` block).

    Attributes ``id``, ``vm_id``, ``shape``, ``expires_at``, ``info`` and ``released`` describe
    the lease. Leaving a ``with`` block releases it, also when the block raised; a lease the
    daemon no longer knows (expired) counts as released.

    Besides ``exec``, a lease is a sandbox: files (``write_file``, ``read_file``, ``read_bytes``,
    ``upload_file``, ``download_file``, ``stat``, ``list_dir``, ``mkdir``, ``remove``, ``chmod``,
    ``chown``, ``rename``), directories as tar streams (``upload_dir``, ``download_dir``),
    streamed commands (``exec_stream``), background processes (``start_process``,
    ``processes``, ``process``, ``signal_process``, ``process_output``, ``follow_output``,
    ``remove_process``) and terminals (``pty``).

    ``Lease(client, info)`` wraps a lease acquired elsewhere (another client, an earlier run) by
    its :class:`firepit.LeaseInfo`: background processes, files and the VM are the lease's, not
    the client's.

    Example::

        with client.lease("default") as vm:
            assert vm.exec(["cat"], stdin=b"hi").stdout == b"hi"
        assert vm.released
    """

    client: Client

    def __init__(self, client: Client, info: LeaseInfo) -> None:
        super().__init__(info)
        self.client = client
        """The client this lease was acquired through."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._released:
            return
        try:
            self.release()
        except FirepitError as error:
            if not release_failed_on_exit(self.id, error, exc is not None):
                raise
            self._released = True

    def forward_port(self, guest_port: int) -> PortForward:
        """Makes the guest's TCP ``guest_port`` reachable from the host (``POST
        /v1/leases/{id}/ports``); the same forward again for a port already forwarded. The
        forward is bound to loopback and ends with the lease. Raises
        :class:`firepit.NetworkDisabled` on a shape without a network.

        Example::

            vm.start_process(["httpd", "-f", "-p", "8000"])
            forward = vm.forward_port(8000)
            httpx.get(f"http://{forward.host_addr}/")
        """
        return self.client._call(_calls.forward_port(self.id, guest_port))

    def remove_forward(self, guest_port: int) -> None:
        """Closes the forward to the guest's ``guest_port`` (``DELETE
        /v1/leases/{id}/ports/{guest_port}``); :class:`firepit.ForwardNotFound` if none is open."""
        self.client._call(_calls.remove_forward(self.id, guest_port))

    def ports(self) -> list[PortForward]:
        """The lease's port forwards, oldest first (``GET /v1/leases/{id}/ports``)."""
        return self.client._call(_calls.ports(self.id))

    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | PurePath | None = None,
        stdin: bytes | bytearray | memoryview | str | None = None,
        timeout: Seconds | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult:
        """Runs a program in the VM to completion and returns its outcome, whatever its exit code
        (``POST /v1/leases/{id}/exec``).

        Args:
            argv: program and arguments (a list; ``argv[0]`` is looked up in the guest's ``PATH``).
            env: extra environment variables.
            cwd: working directory in the guest (default ``/``).
            stdin: bytes (or text, sent as UTF-8) for the program's standard input.
            timeout: kill the program after this long (default: the agent's 60 s); the result
                then has ``timed_out`` set.
            max_output_bytes: keep at most this many bytes of stdout and of stderr each (default
                1 MiB, at most 8 MiB less 64 KiB); the result has ``truncated`` set when cut.

        Raises :class:`firepit.ExecRefused` (e.g. no such program), :class:`firepit.BadRequest`,
        :class:`firepit.LeaseNotFound`, :class:`firepit.VmUnreachable`.

        Example::

            result = vm.exec(["sh", "-c", "echo $GREETING from $(pwd)"],
                             env={"GREETING": "hi"}, cwd="/tmp", timeout=10)
            assert result.stdout_text == "hi from /tmp\\n"
        """
        return self.client._call(_calls.exec_(self.id, argv, env, cwd, stdin, timeout, max_output_bytes))

    def renew(self, ttl: Seconds | None = None) -> LeaseInfo:
        """Extends the lease to ``ttl`` from now (default: the daemon's default TTL) and returns
        the updated lease (``POST /v1/leases/{id}/renew``). Raises :class:`firepit.BadTtl`,
        :class:`firepit.LeaseNotFound`."""
        self._info = self.client._call(_calls.renew(self.id, ttl))
        return self._info

    def pause(self) -> LeaseView:
        """Pauses the lease (``POST /v1/leases/{id}/pause``): its VM's memory, devices and disk
        are saved on the daemon's host and its QEMU exits (no CPU, no RAM); the TTL stops. Pausing
        a paused lease returns its view too. While paused, other calls raise
        :class:`firepit.LeasePaused` (unless the lease was acquired with ``auto_resume``).

        Example::

            view = vm.pause()
            assert view.state == "paused"
            vm.resume()  # files, processes, address and port forwards as they were
        """
        return self.client._call(_calls.pause(self.id))

    def resume(self) -> LeaseView:
        """Runs a paused lease again as it was (``POST /v1/leases/{id}/resume``); resuming a
        running lease returns its view too."""
        return self.client._call(_calls.resume(self.id))

    def snapshot(self) -> Snapshot:
        """Snapshots the running lease (``POST /v1/leases/{id}/snapshots``): memory, processes and
        disk, saved on the daemon's host; the lease runs on. Start leases from it with
        :meth:`Client.lease_from_snapshot`. Raises :class:`firepit.LeasePaused`,
        :class:`firepit.InsufficientStorage` (too little room on the host)."""
        return self.client._call(snapshots.snapshot_lease(self.id))

    def fork(self, count: int, *, ttl: Seconds | None = None) -> list[Lease | FirepitError]:
        """Forks the running lease into ``count`` (1 to 16) new leases (``POST
        /v1/leases/{id}/fork``), each a copy of it at this moment with an identity of its own
        (hostname, machine id, MAC, address). Each fork succeeds or fails on its own: the list
        holds a :class:`Lease` or the error of each, in order.

        Example::

            forks = vm.fork(4)
            for fork in forks:
                if isinstance(fork, firepit.Lease):
                    fork.exec(["hostname"])
        """
        outcomes = self.client._call(snapshots.fork(self.id, count, ttl))
        return [Lease(self.client, o) if isinstance(o, LeaseInfo) else o for o in outcomes]

    def release(self) -> None:
        """Gives the VM back: the daemon destroys it and refills the pool
        (``DELETE /v1/leases/{id}``). Releasing twice is a no-op; a lease that expired raises
        :class:`firepit.LeaseNotFound`."""
        if self._released:
            return
        self.client._call(_calls.release(self.id))
        self._released = True
