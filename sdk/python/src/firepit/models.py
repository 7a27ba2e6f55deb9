"""What the daemon answers, as plain immutable values.

Each class mirrors one response body of the ``/v1`` API (``crates/api/src/types.rs`` in the
firepit repository) with Python types: times are :class:`datetime.datetime` in UTC or seconds as
``float``, bytes are :class:`bytes` (the wire's base64 is decoded here, never by the caller).
``from_json`` builds each from the decoded JSON and raises :class:`ValueError` on a body of the
wrong shape.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["ExecResult", "Health", "LeaseInfo", "Pools", "PortForward", "ShapeStatus"]


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the daemon reports it on acquire and renew.

    Attributes:
        id: the lease id (``l-...``), used in ``/v1/leases/{id}/...``.
        vm_id: the leased VM's id.
        shape: the VM's shape.
        expires_at: when the daemon reclaims the VM unless renewed (UTC).
        replayed: true when an acquire with an idempotency key returned an earlier lease.
    """

    id: str
    vm_id: str
    shape: str
    expires_at: datetime
    replayed: bool = False

    @classmethod
    def from_json(cls, body: Any, *, replayed: bool = False) -> LeaseInfo:
        """Parses a ``LeaseResponse`` body."""
        data = _object(body, "lease")
        return cls(
            id=_str(data, "lease_id"),
            vm_id=_str(data, "vm_id"),
            shape=_str(data, "shape"),
            expires_at=datetime.fromtimestamp(_int(data, "expires_at_unix_ms") / 1000, tz=UTC),
            replayed=replayed,
        )


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run in a VM (whatever its exit code).

    Attributes:
        exit_code: the exit code, or ``None`` when a signal killed the program.
        signal: the signal that killed it, if any (9 after a timeout).
        stdout: standard output (at most ``max_output_bytes``).
        stderr: standard error (at most ``max_output_bytes``).
        truncated: true when an output was cut at ``max_output_bytes``.
        timed_out: true when the program was killed at its timeout.
        duration: run time in the guest, in seconds.
        oom_killed: true when the guest kernel's OOM killer killed the program (or a process it
            started): it allocated more memory than the VM has.

    Example::

        result = vm.exec(["sh", "-c", "echo hi; exit 3"])
        assert result.exit_code == 3 and not result.ok
        assert result.stdout == b"hi\\n" and result.stdout_text == "hi\\n"
    """

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool
    duration: float
    oom_killed: bool = False

    @property
    def ok(self) -> bool:
        """True when the program exited with code 0 (not killed, not timed out)."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def stdout_text(self) -> str:
        """Standard output decoded as UTF-8 (invalid bytes replaced by U+FFFD)."""
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        """Standard error decoded as UTF-8 (invalid bytes replaced by U+FFFD)."""
        return self.stderr.decode("utf-8", errors="replace")

    @classmethod
    def from_json(cls, body: Any) -> ExecResult:
        """Parses an ``ExecResponse`` body, decoding ``base64`` outputs."""
        data = _object(body, "exec result")
        encoding = data.get("encoding", "utf8")
        stdout, stderr = _str(data, "stdout"), _str(data, "stderr")
        if encoding == "base64":
            out, err = base64.b64decode(stdout, validate=True), base64.b64decode(stderr, validate=True)
        elif encoding == "utf8":
            out, err = stdout.encode(), stderr.encode()
        else:
            raise ValueError(f"exec result: unknown encoding {encoding!r}")
        return cls(
            exit_code=_opt_int(data, "exit_code"),
            signal=_opt_int(data, "signal"),
            stdout=out,
            stderr=err,
            truncated=bool(data.get("truncated", False)),
            timed_out=bool(data.get("timed_out", False)),
            duration=_int(data, "duration_ms") / 1000,
            oom_killed=bool(data.get("oom_killed", False)),
        )


@dataclass(frozen=True)
class ShapeStatus:
    """One shape's pool, as ``GET /v1/pools`` reports it.

    Attributes:
        name: the shape's name.
        ready: VMs ready to hand out.
        filling: VMs being booted or restored.
        leased: VMs handed out and not yet released.
        depth_low: the pool refills below this many ready VMs.
        depth_high: ... up to this many.
        fill_failures: failed fills since the daemon started.
        consecutive_failures: failed fills in a row (reset by a success).
        last_error: the last fill error, if any.
        accelerator: ``kvm``, ``tcg`` (or ``none`` for a fake backend).
        fill: ``snapshot`` or ``cold``.
        last_fill: how the last VM was made (``snapshot``, ``cold_boot``, ``cold_boot_fallback``).
        fill_state: for snapshot shapes, the template's state in one line.
        image_id: the guest image's id.
        root_disk: the root disk each VM gets a private overlay of, if the image has one.
        cpus: virtual CPUs per VM.
        memory_mb: guest memory per VM, MiB.
        disk_mb: what each VM may write to its disk, MiB (``None``: the image's free space).
    """

    name: str
    ready: int
    filling: int
    leased: int
    depth_low: int
    depth_high: int
    fill_failures: int
    consecutive_failures: int
    last_error: str | None
    accelerator: str
    fill: str
    last_fill: str | None = None
    fill_state: str | None = None
    image_id: str = ""
    root_disk: str | None = None
    cpus: int = 0
    memory_mb: int = 0
    disk_mb: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> ShapeStatus:
        """Parses one ``ShapeStatusView``."""
        data = _object(body, "shape status")
        return cls(
            name=_str(data, "name"),
            ready=_int(data, "ready"),
            filling=_int(data, "filling"),
            leased=_int(data, "leased"),
            depth_low=_int(data, "depth_low"),
            depth_high=_int(data, "depth_high"),
            fill_failures=_int(data, "fill_failures"),
            consecutive_failures=_int(data, "consecutive_failures"),
            last_error=_opt_str(data, "last_error"),
            accelerator=_str(data, "accelerator"),
            fill=_str(data, "fill"),
            last_fill=_opt_str(data, "last_fill"),
            fill_state=_opt_str(data, "fill_state"),
            image_id=_opt_str(data, "image_id") or "",
            root_disk=_opt_str(data, "root_disk"),
            cpus=_opt_int(data, "cpus") or 0,
            memory_mb=_opt_int(data, "memory_mb") or 0,
            disk_mb=_opt_int(data, "disk_mb"),
        )


@dataclass(frozen=True)
class Pools:
    """Every shape's pool, the number of live leases and the daemon's uptime.

    Example::

        pools = client.pools()
        default = pools.shape("default")
        print(f"{default.ready} ready, {pools.leases} leases, up {pools.uptime_secs} s")
    """

    shapes: tuple[ShapeStatus, ...]
    leases: int
    uptime_secs: int

    def shape(self, name: str) -> ShapeStatus:
        """The status of the shape called ``name``; :class:`KeyError` if there is none."""
        for shape in self.shapes:
            if shape.name == name:
                return shape
        raise KeyError(name)

    @classmethod
    def from_json(cls, body: Any) -> Pools:
        """Parses a ``PoolsResponse`` body."""
        data = _object(body, "pools")
        shapes = data.get("shapes")
        if not isinstance(shapes, list):
            raise ValueError("pools: `shapes` is not a list")
        return cls(
            shapes=tuple(ShapeStatus.from_json(s) for s in shapes),
            leases=_int(data, "leases"),
            uptime_secs=_int(data, "uptime_secs"),
        )


@dataclass(frozen=True)
class Health:
    """The answer of ``GET /healthz``: ``status`` is ``"ok"`` while the daemon serves."""

    status: str

    @classmethod
    def from_json(cls, body: Any) -> Health:
        """Parses a ``HealthResponse`` body."""
        return cls(status=_str(_object(body, "health"), "status"))


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"`{key}` is not a string: {value!r}")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else _str(data, key)


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"`{key}` is not an integer: {value!r}")
    return value


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None else _int(data, key)


@dataclass(frozen=True)
class PortForward:
    """A host address that reaches a TCP port in a leased VM (``POST /v1/leases/{id}/ports``).

    Attributes:
        guest_port: the guest's TCP port.
        host: the host address to connect to (loopback unless the daemon is configured otherwise).
        port: the host port.

    Example::

        forward = vm.forward_port(8000)
        httpx.get(f"http://{forward.host_addr}/")
    """

    guest_port: int
    host: str
    port: int

    @property
    def host_addr(self) -> str:
        """``host:port`` (IPv6 hosts in brackets), ready for a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_json(cls, body: Any) -> PortForward:
        """Parses a ``PortForward`` body (``{guest_port, host_addr}``)."""
        if not isinstance(body, dict):
            raise ValueError(f"expected a port forward object, got {body!r}")
        guest_port, addr = body.get("guest_port"), body.get("host_addr")
        if not isinstance(guest_port, int) or not isinstance(addr, str) or ":" not in addr:
            raise ValueError(f"expected {{guest_port, host_addr}}, got {body!r}")
        host, _, port = addr.rpartition(":")
        return cls(guest_port=guest_port, host=host.strip("[]"), port=int(port))
