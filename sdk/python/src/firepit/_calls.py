"""Each endpoint as data: what to send and how to read the answer, with no I/O.

The sync :class:`firepit.Client` and the async :class:`firepit.AsyncClient` share this module, so
the two cannot disagree on a path, a field or an error: each of their methods builds a
:class:`Call` here and hands it to its own transport, then to :func:`finish`.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import FirepitError, error_from_response
from .lease_models import LeaseView
from .models import ExecResult, Health, LeaseInfo, Pools, PortForward

T = TypeVar("T")

Seconds = float | timedelta
"""A duration: seconds as ``int``/``float``, or a :class:`datetime.timedelta`."""

AGENT_DEFAULT_EXEC_TIMEOUT = 60.0
"""What the guest agent uses when an exec names no timeout, in seconds."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the parser of its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    server_time: float = 0.0
    """Seconds the daemon may take on purpose (a wait, a command's timeout) on top of the
    client's own timeout."""


def finish(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or the typed error of a non-2xx one (the body must have been read)."""
    if not response.is_success:
        raise error_from_response(response)
    try:
        return call.parse(response)
    except ValueError as error:
        raise FirepitError(
            "unexpected_response",
            f"{call.method} {call.path}: the daemon's answer is not what this SDK expects: {error}",
            status=response.status_code,
        ) from error


def to_ms(value: Seconds, what: str) -> int:
    """Seconds (or a timedelta) as whole milliseconds, rounded up; negative values are refused."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, got {value!r}")
    return math.ceil(seconds * 1000)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _nothing(_response: httpx.Response) -> None:
    return None


Egress = str | Sequence[str]
"""A lease's egress: ``"deny"``, or entries in the syntax of a shape's ``egress`` list
(``"10.1.0.0/16:443"``, ``"pypi.org:443"``, ``"*.pythonhosted.org"``)."""


def shape_or_sizes(
    shape: str | None, cpus: int | None, memory_mb: int | None, disk_mb: int | None
) -> str | None:
    """The shape to send: none when sizes are given instead and the shape is left at its default."""
    return None if shape == "default" and any(v is not None for v in (cpus, memory_mb, disk_mb)) else shape


def acquire(
    shape: str | None,
    wait: Seconds,
    ttl: Seconds | None,
    idempotency_key: str | None,
    egress: Egress | None = None,
    *,
    cpus: int | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    metadata: Mapping[str, str] | None = None,
    auto_resume: bool = False,
    on_expiry: str | None = None,
    snapshot: str | None = None,
) -> Call[LeaseInfo]:
    """``POST /v1/leases``: of ``shape``, or (``shape`` ``None``) of the smallest shape covering
    the sizes given."""
    wait_ms = to_ms(wait, "wait")
    body: dict[str, Any] = {"wait_ms": wait_ms}
    if shape is not None:
        body["shape"] = shape
    sizes = {"cpus": cpus, "memory_mb": memory_mb, "disk_mb": disk_mb}
    body.update({k: v for k, v in sizes.items() if v is not None})
    if ttl is not None:
        body["ttl_ms"] = to_ms(ttl, "ttl")
    if egress is not None:
        body["egress"] = egress if isinstance(egress, str) else list(egress)
    if metadata:
        body["metadata"] = dict(metadata)
    if auto_resume:
        body["auto_resume"] = True
    if on_expiry is not None:
        body["on_expiry"] = on_expiry
    if snapshot is not None:
        body["snapshot"] = snapshot
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}

    def parse(response: httpx.Response) -> LeaseInfo:
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return LeaseInfo.from_json(_json(response), replayed=replayed)

    return Call("POST", "/v1/leases", parse, body, headers, server_time=wait_ms / 1000)


def exec_(
    lease_id: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | PurePath | None,
    stdin: bytes | bytearray | memoryview | str | None,
    timeout: Seconds | None,
    max_output_bytes: int | None,
) -> Call[ExecResult]:
    """``POST /v1/leases/{id}/exec``: ``str`` stdin goes as UTF-8, bytes as base64."""
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list of strings, e.g. ['sh', '-c', 'echo hi'], not one string")
    body: dict[str, Any] = {"argv": [str(a) for a in argv]}
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = str(cwd)
    if isinstance(stdin, str):
        body["stdin"] = stdin
    elif stdin is not None:
        body["stdin"] = base64.b64encode(bytes(stdin)).decode("ascii")
        body["stdin_encoding"] = "base64"
    timeout_ms = 0
    if timeout is not None:
        timeout_ms = to_ms(timeout, "timeout")
        if timeout_ms == 0:
            raise ValueError("timeout must be positive (None: the agent's default of 60 s)")
        body["timeout_ms"] = timeout_ms
    if max_output_bytes is not None:
        body["max_output_bytes"] = max_output_bytes
    server_time = timeout_ms / 1000 if timeout_ms else AGENT_DEFAULT_EXEC_TIMEOUT
    path = f"/v1/leases/{_segment(lease_id)}/exec"
    return Call("POST", path, lambda r: ExecResult.from_json(_json(r)), body, server_time=server_time)


def renew(lease_id: str, ttl: Seconds | None) -> Call[LeaseInfo]:
    """``POST /v1/leases/{id}/renew``."""
    body = {"ttl_ms": to_ms(ttl, "ttl")} if ttl is not None else {}
    path = f"/v1/leases/{_segment(lease_id)}/renew"
    return Call("POST", path, lambda r: LeaseInfo.from_json(_json(r)), body)


def release(lease_id: str) -> Call[None]:
    """``DELETE /v1/leases/{id}``."""
    return Call("DELETE", f"/v1/leases/{_segment(lease_id)}", _nothing)


def leases(state: str | None, metadata: Mapping[str, str] | None, shape: str | None) -> Call[list[LeaseView]]:
    """``GET /v1/leases?state=&shape=&metadata.NAME=VALUE``."""
    pairs = [("state", state), ("shape", shape)] + [(f"metadata.{k}", v) for k, v in (metadata or {}).items()]
    query = "&".join(f"{quote(k, safe='.')}={quote(v, safe='')}" for k, v in pairs if v is not None)
    path = f"/v1/leases?{query}" if query else "/v1/leases"

    def parse(response: httpx.Response) -> list[LeaseView]:
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("leases"), list):
            raise ValueError("expected {leases: [...]}")
        return [LeaseView.from_json(item) for item in body["leases"]]

    return Call("GET", path, parse)


def lease_view(lease_id: str) -> Call[LeaseView]:
    """``GET /v1/leases/{id}``."""
    return Call("GET", f"/v1/leases/{_segment(lease_id)}", lambda r: LeaseView.from_json(_json(r)))


def pause(lease_id: str) -> Call[LeaseView]:
    """``POST /v1/leases/{id}/pause``."""
    return Call("POST", f"/v1/leases/{_segment(lease_id)}/pause", lambda r: LeaseView.from_json(_json(r)), {})


def resume(lease_id: str) -> Call[LeaseView]:
    """``POST /v1/leases/{id}/resume``."""
    return Call(
        "POST", f"/v1/leases/{_segment(lease_id)}/resume", lambda r: LeaseView.from_json(_json(r)), {}
    )


def events_path(kinds: Sequence[str] | None, lease_id: str | None, after: int | str | None) -> str:
    """``GET /v1/events?kind=&lease_id=&last_event_id=``."""
    pairs = [
        ("kind", ",".join(kinds) if kinds else None),
        ("lease_id", lease_id),
        ("last_event_id", None if after is None else str(after)),
    ]
    query = "&".join(f"{k}={quote(v, safe=',')}" for k, v in pairs if v is not None)
    return f"/v1/events?{query}" if query else "/v1/events"


def pools() -> Call[Pools]:
    """``GET /v1/pools``."""
    return Call("GET", "/v1/pools", lambda r: Pools.from_json(_json(r)))


def register_shape(
    name: str,
    image: str | os.PathLike[str],
    cpus: int | None,
    memory_mb: int | None,
    depth_low: int | None,
    depth_high: int | None,
    max_age: Seconds | None,
    fill: str | None,
    health_check: bool | None,
    network: str | Mapping[str, Any] | None,
    pause_idle: bool | None,
    warm_up: bool | None,
    disk_mb: int | None = None,
    warm_up_argv: Sequence[str] | None = None,
) -> Call[None]:
    """``PUT /v1/shapes/{name}``: fields left ``None`` take the daemon's defaults."""
    body: dict[str, Any] = {"image": os.fspath(image)}
    optional: dict[str, Any] = {
        "cpus": cpus,
        "memory_mb": memory_mb,
        "disk_mb": disk_mb,
        "fill": fill,
        "health_check": health_check,
        "network": network if network is None or isinstance(network, str) else dict(network),
        "pause_idle": pause_idle,
        "warm_up": warm_up,
        "warm_up_argv": None if warm_up_argv is None else [str(arg) for arg in warm_up_argv],
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    depth = {"low": depth_low, "high": depth_high}
    if any(v is not None for v in depth.values()):
        body["depth"] = {k: v for k, v in depth.items() if v is not None}
    if max_age is not None:
        body["max_age_secs"] = math.ceil(to_ms(max_age, "max_age") / 1000)
    return Call("PUT", f"/v1/shapes/{_segment(name)}", _nothing, body)


def _check_port(guest_port: int) -> None:
    if isinstance(guest_port, bool) or not isinstance(guest_port, int) or not 1 <= guest_port <= 65535:
        raise ValueError(f"guest_port must be a TCP port 1..65535, got {guest_port!r}")


def forward_port(lease_id: str, guest_port: int) -> Call[PortForward]:
    """``POST /v1/leases/{id}/ports``."""
    _check_port(guest_port)
    path = f"/v1/leases/{_segment(lease_id)}/ports"
    return Call("POST", path, lambda r: PortForward.from_json(_json(r)), {"guest_port": guest_port})


def remove_forward(lease_id: str, guest_port: int) -> Call[None]:
    """``DELETE /v1/leases/{id}/ports/{guest_port}``."""
    _check_port(guest_port)
    return Call("DELETE", f"/v1/leases/{_segment(lease_id)}/ports/{guest_port}", _nothing)


def ports(lease_id: str) -> Call[list[PortForward]]:
    """``GET /v1/leases/{id}/ports``."""

    def parse(response: httpx.Response) -> list[PortForward]:
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("ports"), list):
            raise ValueError(f"expected {{ports: [...]}}, got {body!r}")
        return [PortForward.from_json(entry) for entry in body["ports"]]

    return Call("GET", f"/v1/leases/{_segment(lease_id)}/ports", parse)


def unregister_shape(name: str) -> Call[None]:
    """``DELETE /v1/shapes/{name}``."""
    return Call("DELETE", f"/v1/shapes/{_segment(name)}", _nothing)


def healthz() -> Call[Health]:
    """``GET /healthz``."""
    return Call("GET", "/healthz", lambda r: Health.from_json(_json(r)))


def metrics() -> Call[str]:
    """``GET /metrics``: Prometheus text."""
    return Call("GET", "/metrics", lambda r: r.text)


def openapi() -> Call[dict[str, Any]]:
    """``GET /v1/openapi.json``."""

    def parse(response: httpx.Response) -> dict[str, Any]:
        document = _json(response)
        if not isinstance(document, dict):
            raise ValueError("the OpenAPI document is not a JSON object")
        return document

    return Call("GET", "/v1/openapi.json", parse)
