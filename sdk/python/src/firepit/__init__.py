"""The Python SDK of firepit: lease warm microVMs from a ``firepit serve`` daemon and use them as
sandboxes: commands (to completion or streamed), files and directories, background processes,
terminals.

:class:`Client` (sync) and :class:`AsyncClient` (asyncio) have the same surface: ``lease()``
hands out a VM (a :class:`Lease` / :class:`AsyncLease`, a context manager that releases it),
``pools()``, ``register_shape()``, ``unregister_shape()``, ``healthz()``, ``metrics()``,
``openapi()``. Errors are :class:`FirepitError` subclasses named after the daemon's error codes.

Example::

    import firepit

    with firepit.Client() as client:              # $FIREPIT_SOCKET / $FIREPIT_URL, else the default socket
        with client.lease("default") as vm:       # released when the block ends
            result = vm.exec(["uname", "-r"])
            print(result.exit_code, result.stdout_text)
"""

from ._async_streams import AsyncEventStream, AsyncFileReader
from ._sync_streams import EventStream, FileReader
from .aio import AsyncClient, AsyncLease, AsyncLeaseRequest
from .client import Client, Lease
from .endpoint import Endpoint, default_runtime_dir, default_socket_path, resolve_endpoint
from .errors import (
    AlreadyExists,
    BadMetadata,
    BadRequest,
    BadTtl,
    ClusterUnavailable,
    ConnectError,
    DirectoryNotEmpty,
    Draining,
    EgressWidens,
    ExecRefused,
    Exhausted,
    FirepitError,
    ForwardFailed,
    ForwardNotFound,
    GuestError,
    GuestIoError,
    HostLost,
    HostUnreachable,
    IdempotencyConflict,
    InvalidInput,
    InvalidShape,
    IsADirectory,
    LeaseEnded,
    LeaseNotFound,
    LeasePaused,
    LimitReached,
    NetworkDisabled,
    NoShapeFits,
    NotADirectory,
    NotFound,
    PermissionDenied,
    ProcessNotFound,
    ServerError,
    ShapeExists,
    ShuttingDown,
    SnapshotInUse,
    SnapshotNotFound,
    TransportError,
    Unauthorized,
    UnknownShape,
    Unsupported,
    VmUnreachable,
    error_from_code,
    error_from_response,
)
from .lease_models import Event, LeaseView
from .models import ExecResult, Health, LeaseInfo, Pools, PortForward, ShapeStatus
from .pty import AsyncPty, Pty
from .sandbox_models import (
    DirEntry,
    Eof,
    Exit,
    ExitStatus,
    FileStat,
    Output,
    ProcessInfo,
    ProcessOutput,
    Started,
    StreamEvent,
)
from .snapshots import Snapshot
from .usage_models import LeaseMetrics, UsageSample

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncFileReader",
    "AsyncLease",
    "AsyncLeaseRequest",
    "AsyncPty",
    "BadMetadata",
    "BadRequest",
    "BadTtl",
    "Client",
    "ClusterUnavailable",
    "ConnectError",
    "DirEntry",
    "DirectoryNotEmpty",
    "Draining",
    "EgressWidens",
    "Endpoint",
    "Eof",
    "Event",
    "EventStream",
    "ExecRefused",
    "ExecResult",
    "Exhausted",
    "Exit",
    "ExitStatus",
    "FileReader",
    "FileStat",
    "FirepitError",
    "ForwardFailed",
    "ForwardNotFound",
    "GuestError",
    "GuestIoError",
    "Health",
    "HostLost",
    "HostUnreachable",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidShape",
    "IsADirectory",
    "Lease",
    "LeaseEnded",
    "LeaseInfo",
    "LeaseMetrics",
    "LeaseNotFound",
    "LeasePaused",
    "LeaseView",
    "LimitReached",
    "NetworkDisabled",
    "NoShapeFits",
    "NotADirectory",
    "NotFound",
    "Output",
    "PermissionDenied",
    "Pools",
    "PortForward",
    "ProcessInfo",
    "ProcessNotFound",
    "ProcessOutput",
    "Pty",
    "ServerError",
    "ShapeExists",
    "ShapeStatus",
    "ShuttingDown",
    "Snapshot",
    "SnapshotInUse",
    "SnapshotNotFound",
    "Started",
    "StreamEvent",
    "TransportError",
    "Unauthorized",
    "UnknownShape",
    "Unsupported",
    "UsageSample",
    "VmUnreachable",
    "__version__",
    "default_runtime_dir",
    "default_socket_path",
    "error_from_code",
    "error_from_response",
    "resolve_endpoint",
]
