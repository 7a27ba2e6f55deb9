"""Every failure the SDK raises, as one exception hierarchy.

The daemon answers every error with a JSON body ``{"error": "<code>", "message": "<text>"}``
and a 4xx/5xx status. The ``code`` is stable and machine-readable; :func:`error_from_response`
maps it to a subclass of :class:`FirepitError` so callers can ``except firepit.Exhausted:``
instead of comparing strings. A code this SDK does not know yet (a newer daemon) still raises
:class:`FirepitError` with that code, never a crash.

The codes, their statuses and meanings are the ``ErrorCode`` schema of the daemon's OpenAPI
document (``firepit_api::ErrorCode`` in the Rust source); ``_BY_CODE`` below maps each to its
class, and a test fails when the two lists differ. A new code is one line there and one here.

Failures before an answer arrives (no daemon listening, a read timeout, a dropped connection)
are :class:`TransportError` and :class:`ConnectError`, with ``status`` ``None``.

Example::

    import firepit

    try:
        with firepit.Client() as client, client.lease("default", wait=0) as vm:
            vm.exec(["true"])
    except firepit.Exhausted as error:
        print(f"no VM ready, retry in {error.retry_after} s")
    except firepit.FirepitError as error:
        print(error.code, error.status, error.message)
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "AlreadyExists",
    "BadArchive",
    "BadMetadata",
    "BadRequest",
    "BadTtl",
    "ClusterUnavailable",
    "ConnectError",
    "DirectoryNotEmpty",
    "Draining",
    "EgressWidens",
    "ExecRefused",
    "Exhausted",
    "FirepitError",
    "ForwardFailed",
    "ForwardNotFound",
    "GuestError",
    "GuestIoError",
    "HostLost",
    "HostUnreachable",
    "IdempotencyConflict",
    "InsufficientStorage",
    "InvalidInput",
    "InvalidShape",
    "IsADirectory",
    "LeaseEnded",
    "LeaseNotFound",
    "LeasePaused",
    "LimitReached",
    "NameTooLong",
    "NetworkDisabled",
    "NotADirectory",
    "NotFound",
    "PermissionDenied",
    "ProcessNotFound",
    "ServerError",
    "ShapeExists",
    "ShuttingDown",
    "SnapshotInUse",
    "SnapshotNotFound",
    "TooManyConnections",
    "TransportError",
    "Unauthorized",
    "UnknownShape",
    "Unsupported",
    "VmUnreachable",
    "error_from_code",
    "error_from_response",
]


class FirepitError(Exception):
    """Base class of every error the SDK raises.

    Attributes:
        code: the daemon's stable error code (``"exhausted"``, ``"lease_not_found"``, ...), or
            ``"connect"`` / ``"transport"`` when no answer arrived, ``"unexpected_response"``
            when the answer was not the JSON expected.
        status: the HTTP status, or ``None`` when no answer arrived.
        message: what went wrong and what to do, for humans.
        retry_after: seconds the daemon asked the client to wait (``Retry-After``), if any.

    Example::

        error = firepit.FirepitError("backend_error", "the pool failed", status=500)
        assert str(error) == "the pool failed (backend_error, HTTP 500)"
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        super().__init__(code, message)

    def __str__(self) -> str:
        where = f", HTTP {self.status}" if self.status is not None else ""
        return f"{self.message} ({self.code}{where})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class TransportError(FirepitError):
    """The HTTP exchange failed before a complete answer arrived (timeout, dropped connection)."""


class ConnectError(TransportError):
    """No daemon answered at the endpoint; the message says where and how to start one."""


class BadRequest(FirepitError):
    """The daemon rejected the request as malformed (``bad_request``, ``bad_json``, ``bad_argv``,
    ``bad_env``, ``bad_cwd``, ``bad_stdin``, ``bad_tag``, ``bad_signal``, ``bad_port``,
    ``bad_body``, ``body_timeout``, ``body_too_large``, ``unsupported_media_type``,
    ``unknown_endpoint``, ``method_not_allowed``, ``upgrade_required``)."""


class TooManyConnections(FirepitError):
    """The client has as many connections open as the daemon allows
    (``too_many_connections``, HTTP 429); close some or reuse them."""


class BadTtl(BadRequest):
    """A lease TTL outside ``1 ms ..= leases.max_ttl_secs`` (``bad_ttl``)."""


class UnknownShape(FirepitError):
    """No shape of that name is registered (``unknown_shape``)."""


class Exhausted(FirepitError):
    """No VM of the shape became ready within ``wait`` (``exhausted``); see ``retry_after``."""


class ShuttingDown(FirepitError):
    """The daemon is stopping and takes no new work (``shutting_down``)."""


class Draining(FirepitError):
    """The daemon drains (``firepit drain``, or a stop in a cluster): its leases run to their end,
    new ones go to another host (``draining``)."""


class HostLost(FirepitError):
    """Through a gateway: the lease's host died or restarted; the lease is gone (``host_lost``,
    HTTP 410). Acquire a new one."""


class HostUnreachable(FirepitError):
    """Through a gateway: the lease's host is registered but did not answer (``host_unreachable``)."""


class ClusterUnavailable(FirepitError):
    """Through a gateway: new leases cannot be placed, because etcd does not answer
    (``cluster_unavailable``) or no daemon is registered (``no_host``); leases the gateway routed
    before still work."""


class LeaseNotFound(FirepitError):
    """The lease was released, expired or never existed (``lease_not_found``)."""


class SnapshotNotFound(FirepitError):
    """No snapshot with that id: deleted, or never made (``snapshot_not_found``)."""


class SnapshotInUse(FirepitError):
    """A registered shape's image is the snapshot: unregister that shape first (``snapshot_in_use``)."""


class IdempotencyConflict(FirepitError):
    """The idempotency key was used before for another shape (``idempotency_conflict``)."""


class ExecRefused(FirepitError):
    """The guest agent refused the command, e.g. the program does not exist (``exec_refused``)."""


class VmUnreachable(FirepitError):
    """The leased VM did not answer (``vm_unreachable``)."""


class Unauthorized(FirepitError):
    """The TCP listener needs ``Authorization: Bearer <token>`` and got none or a wrong one."""


class GuestError(FirepitError):
    """The guest could not do what was asked with a path or a process; the subclass says why.
    The VM is fine and the lease stays usable."""


class NotFound(GuestError):
    """The guest path (or a parent of it) does not exist (``not_found``, HTTP 404)."""


class AlreadyExists(GuestError):
    """The path exists, or a running process has that tag (``already_exists``)."""


class PermissionDenied(GuestError):
    """The guest refused access (``permission_denied``)."""


class IsADirectory(GuestError):
    """A directory where a file is needed (``is_a_directory``)."""


class NotADirectory(GuestError):
    """A file where a directory is needed (``not_a_directory``)."""


class DirectoryNotEmpty(GuestError):
    """A non-empty directory removed without ``recursive=True`` (``directory_not_empty``)."""


class ProcessNotFound(GuestError):
    """No background process with that id or tag (``process_not_found``)."""


class LimitReached(GuestError):
    """Too many background processes or streams in the guest (``limit_reached``)."""


class GuestIoError(GuestError):
    """Another I/O error in the guest (``io_error``)."""


class InsufficientStorage(GuestError):
    """The guest's file system is full, or, for a pause or a snapshot, the host's directory for
    saved VMs has too little room (the lease runs on) (``insufficient_storage``, HTTP 507)."""


class InvalidInput(BadRequest):
    """The guest refused the request's arguments: a relative path, a bad mode (``invalid_input``)."""


class NameTooLong(InvalidInput):
    """A path, or one name in it, is longer than the guest takes: 255 bytes a name, 4,095 a path
    (``name_too_long``)."""


class BadArchive(BadRequest):
    """An uploaded archive was refused: not an uncompressed tar (``bad_archive``), past a limit
    of the unpacker (``archive_limit``), or with an entry it does not make, such as a path with
    ``..`` or a device node (``archive_entry_refused``). The directory is left as it was."""


class LeaseEnded(FirepitError):
    """The lease ended (released, expired, the daemon stopping) while a stream on it ran
    (``lease_ended``)."""


class LeasePaused(FirepitError):
    """The lease is paused: resume it first, or acquire with ``auto_resume`` (``lease_paused``,
    HTTP 409)."""


class BadMetadata(BadRequest):
    """The lease's metadata is over its limits: too many labels, a bad name, a value too long
    (``bad_metadata``)."""


class Unsupported(FirepitError):
    """The daemon's backend cannot do this (``unsupported``, HTTP 501)."""


class ShapeExists(FirepitError):
    """A shape of that name is registered already; unregister it first (``shape_exists``)."""


class InvalidShape(FirepitError):
    """The shape's settings are invalid; the message names the field (``invalid_shape``)."""


class NetworkDisabled(FirepitError):
    """The lease's shape has no network: no port forwards, no egress list (``network_disabled``);
    give the shape ``network = "nat"``."""


class EgressWidens(BadRequest):
    """The egress asked for at acquire is not within the shape's policy; the message names the
    entry (``egress_widens``). A lease can only narrow its shape's egress."""


class NoShapeFits(BadRequest):
    """No registered shape covers the ``cpus``, ``memory_mb`` and ``disk_mb`` a lease asked for
    instead of a shape; the message names the largest (``no_shape_fits``)."""


class ForwardNotFound(FirepitError):
    """No forward to that guest port is open on the lease (``forward_not_found``)."""


class ForwardFailed(FirepitError):
    """The VM's NAT refused the port forward (``forward_failed``)."""


class ServerError(FirepitError):
    """The daemon or its VM backend failed; the message has the cause (``backend_error``,
    ``internal_error``)."""


_BY_CODE: dict[str, type[FirepitError]] = {
    "bad_request": BadRequest,
    "bad_json": BadRequest,
    "bad_body": BadRequest,
    "body_too_large": BadRequest,
    "unsupported_media_type": BadRequest,
    "unknown_endpoint": BadRequest,
    "method_not_allowed": BadRequest,
    "upgrade_required": BadRequest,
    "bad_argv": BadRequest,
    "bad_env": BadRequest,
    "bad_stdin": BadRequest,
    "bad_ttl": BadTtl,
    "bad_cwd": BadRequest,
    "body_timeout": BadRequest,
    "too_many_connections": TooManyConnections,
    "unknown_shape": UnknownShape,
    "no_shape_fits": NoShapeFits,
    "exhausted": Exhausted,
    "shutting_down": ShuttingDown,
    "lease_not_found": LeaseNotFound,
    "snapshot_not_found": SnapshotNotFound,
    "snapshot_in_use": SnapshotInUse,
    "idempotency_conflict": IdempotencyConflict,
    "exec_refused": ExecRefused,
    "vm_unreachable": VmUnreachable,
    "unauthorized": Unauthorized,
    "shape_exists": ShapeExists,
    "invalid_shape": InvalidShape,
    "bad_tag": BadRequest,
    "bad_signal": BadRequest,
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "permission_denied": PermissionDenied,
    "is_a_directory": IsADirectory,
    "not_a_directory": NotADirectory,
    "directory_not_empty": DirectoryNotEmpty,
    "invalid_input": InvalidInput,
    "process_not_found": ProcessNotFound,
    "limit_reached": LimitReached,
    "io_error": GuestIoError,
    "name_too_long": NameTooLong,
    "insufficient_storage": InsufficientStorage,
    "bad_archive": BadArchive,
    "archive_limit": BadArchive,
    "archive_entry_refused": BadArchive,
    "lease_ended": LeaseEnded,
    "lease_paused": LeasePaused,
    "bad_metadata": BadMetadata,
    "unsupported": Unsupported,
    "network_disabled": NetworkDisabled,
    "egress_widens": EgressWidens,
    "bad_port": BadRequest,
    "forward_failed": ForwardFailed,
    "forward_not_found": ForwardNotFound,
    "backend_error": ServerError,
    "internal_error": ServerError,
    "draining": Draining,
    "host_lost": HostLost,
    "host_unreachable": HostUnreachable,
    "cluster_unavailable": ClusterUnavailable,
    "no_host": ClusterUnavailable,
}


def error_from_code(code: str, message: str, status: int | None = None) -> FirepitError:
    """The typed error for a code the daemon sent inside a stream (an NDJSON ``error`` event, a
    terminal's ``error`` message), where there is no HTTP status of its own.

    Example::

        error = firepit.error_from_code("lease_ended", "the lease ended")
        assert isinstance(error, firepit.LeaseEnded)
    """
    return _BY_CODE.get(code, FirepitError)(code, message, status=status)


def error_from_response(response: httpx.Response) -> FirepitError:
    """The typed error for a non-2xx answer (the body must have been read).

    Example::

        response = client.request("POST", "/v1/leases", content=b"[]",
                                  headers={"content-type": "application/json"})
        error = firepit.error_from_response(response)
        assert isinstance(error, firepit.BadRequest) and error.code == "bad_json"
    """
    status = response.status_code
    retry_after = _retry_after(response.headers.get("retry-after"))
    body = _json_object(response.content)
    code = body.get("error") if body is not None else None
    message = body.get("message") if body is not None else None
    if isinstance(code, str):
        text = message if isinstance(message, str) else code
        cls = _BY_CODE.get(code, FirepitError)
        return cls(code, text, status=status, retry_after=retry_after)
    if body is not None and body.get("status") == "shutting_down":
        # `/healthz` answers 503 with its own body while the daemon stops.
        return ShuttingDown("shutting_down", "the daemon is shutting down", status=status)
    text = response.text.strip() or response.reason_phrase or "no body"
    return FirepitError(
        "unexpected_response",
        f"unexpected answer from the daemon: {text[:500]}",
        status=status,
        retry_after=retry_after,
    )


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date; the daemon sends seconds
