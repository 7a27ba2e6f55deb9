"""Leases as ``GET /v1/leases`` shows them, and the daemon's events (``GET /v1/events``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .models import _int, _object, _opt_int, _opt_str, _str

__all__ = ["Event", "LeaseView"]


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _labels(data: dict[str, Any]) -> dict[str, str]:
    labels = data.get("metadata") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError(f"`metadata` is not a map of strings: {labels!r}")
    return dict(labels)


@dataclass(frozen=True)
class LeaseView:
    """One lease: live (``running``, ``paused``) or ended, with why.

    Attributes:
        id, vm_id, shape: the lease, its VM and the VM's shape.
        state: ``running``, ``paused`` or ``ended``.
        created_at, expires_at: when it was handed out, when its TTL runs out (UTC).
        metadata: the labels given at acquire.
        end_reason: once ended: ``released``, ``ttl_expired``, ``vm_exited``,
            ``health_check_failed``, ``host_shutdown``, ``daemon_restart``, ``killed``, ...
        end_detail: more about the end, when there is more.
        ended_at, paused_at: when it ended, when it was paused.
        pid, cgroup: its VM's QEMU process and cgroup on the host, while it runs.
    """

    id: str
    vm_id: str
    shape: str
    state: str
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    end_reason: str | None = None
    end_detail: str | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    pid: int | None = None
    cgroup: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> LeaseView:
        """Parses a ``LeaseView`` body."""
        data = _object(body, "lease")
        return cls(
            id=_str(data, "id"),
            vm_id=_str(data, "vm_id"),
            shape=_str(data, "shape"),
            state=_str(data, "state"),
            created_at=datetime.fromtimestamp(_int(data, "created_at_unix_ms") / 1000, tz=UTC),
            expires_at=datetime.fromtimestamp(_int(data, "expires_at_unix_ms") / 1000, tz=UTC),
            metadata=_labels(data),
            end_reason=_opt_str(data, "end_reason"),
            end_detail=_opt_str(data, "end_detail"),
            ended_at=_time(_opt_int(data, "ended_at_unix_ms")),
            paused_at=_time(_opt_int(data, "paused_at_unix_ms")),
            pid=_opt_int(data, "pid"),
            cgroup=_opt_str(data, "cgroup"),
        )


@dataclass(frozen=True)
class Event:
    """One event of the daemon (``lease.created``, ``lease.ended``, ``shape.fill_failed``, ...).

    Attributes:
        id: increasing; give the last one seen as ``after`` to resume.
        kind: what happened.
        at: when (UTC).
        lease_id, shape, metadata: what it is about.
        reason, detail: ``lease.ended``'s end reason and more about it.
        raw: the whole event as the daemon sent it.
        resume_id: the stream's own id for this event, to give as ``after`` to resume: the
            event's id from a daemon, a cursor over every host through a gateway (there ``id``
            is one host's and cannot resume the merged stream).
    """

    id: int
    kind: str
    at: datetime
    lease_id: str | None = None
    shape: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    resume_id: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> Event:
        """Parses an ``Event`` body."""
        data = _object(body, "event")
        return cls(
            id=_int(data, "id"),
            kind=_str(data, "kind"),
            at=datetime.fromtimestamp(_int(data, "at_unix_ms") / 1000, tz=UTC),
            lease_id=_opt_str(data, "lease_id"),
            shape=_opt_str(data, "shape"),
            metadata=_labels(data),
            reason=_opt_str(data, "reason"),
            detail=_opt_str(data, "detail"),
            raw=dict(data),
        )
