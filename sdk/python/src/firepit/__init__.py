"""The Python SDK of firepit: lease warm microVMs from a ``firepit serve`` daemon and run commands
in them.

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

from .aio import AsyncClient, AsyncLease, AsyncLeaseRequest
from .client import Client, Lease
from .endpoint import Endpoint, default_runtime_dir, default_socket_path, resolve_endpoint
from .errors import (
    BadRequest,
    BadTtl,
    ConnectError,
    ExecRefused,
    Exhausted,
    FirepitError,
    IdempotencyConflict,
    InvalidShape,
    LeaseNotFound,
    ShapeExists,
    ShuttingDown,
    TransportError,
    Unauthorized,
    UnknownShape,
    VmUnreachable,
    error_from_response,
)
from .models import ExecResult, Health, LeaseInfo, Pools, ShapeStatus

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncLease",
    "AsyncLeaseRequest",
    "BadRequest",
    "BadTtl",
    "Client",
    "ConnectError",
    "Endpoint",
    "ExecRefused",
    "ExecResult",
    "Exhausted",
    "FirepitError",
    "Health",
    "IdempotencyConflict",
    "InvalidShape",
    "Lease",
    "LeaseInfo",
    "LeaseNotFound",
    "Pools",
    "ShapeExists",
    "ShapeStatus",
    "ShuttingDown",
    "TransportError",
    "Unauthorized",
    "UnknownShape",
    "VmUnreachable",
    "__version__",
    "default_runtime_dir",
    "default_socket_path",
    "error_from_response",
    "resolve_endpoint",
]
