"""Snapshots and forks of a lease: the :class:`Snapshot` model and each endpoint as a
:class:`firepit._calls.Call` (no I/O), shared by the sync and async clients.

A snapshot (``vm.snapshot()``) is a lease's VM saved on the daemon's host: memory, processes,
disk. ``client.lease_from_snapshot(id)`` starts a new lease from it (its files and processes as
they were, with an identity of its own). ``vm.fork(n)`` makes ``n`` such leases at once from a
running lease; each succeeds or fails on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from ._calls import Call, Seconds, _json, _nothing, _segment, to_ms
from .errors import FirepitError, error_from_code
from .models import LeaseInfo, _int, _object, _str

__all__ = ["FORK_MAX", "Snapshot"]

FORK_MAX = 16
"""Most forks one call may ask for."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot of a lease's VM.

    Attributes:
        id: the snapshot id (``s-...``): start leases from it with
            :meth:`firepit.Client.lease_from_snapshot`.
        source_lease_id: the lease it was taken of (which may have ended since).
        shape: the shape of leases started from it.
        created_at: when it was taken (UTC).
        size_bytes: what it takes on the daemon's disk.
    """

    id: str
    source_lease_id: str
    shape: str
    created_at: datetime
    size_bytes: int

    @classmethod
    def from_json(cls, body: Any) -> Snapshot:
        """Parses a ``SnapshotInfo`` body."""
        data = _object(body, "snapshot")
        return cls(
            id=_str(data, "snapshot_id"),
            source_lease_id=_str(data, "source_lease_id"),
            shape=_str(data, "shape"),
            created_at=datetime.fromtimestamp(_int(data, "created_at_unix_ms") / 1000, tz=UTC),
            size_bytes=_int(data, "size_bytes"),
        )


def snapshot_lease(lease_id: str) -> Call[Snapshot]:
    """``POST /v1/leases/{id}/snapshots``."""
    path = f"/v1/leases/{_segment(lease_id)}/snapshots"
    return Call("POST", path, lambda r: Snapshot.from_json(_json(r)), {}, server_time=60.0)


def list_snapshots() -> Call[list[Snapshot]]:
    """``GET /v1/snapshots``."""

    def parse(response: httpx.Response) -> list[Snapshot]:
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("snapshots"), list):
            raise ValueError("expected {snapshots: [...]}")
        return [Snapshot.from_json(item) for item in body["snapshots"]]

    return Call("GET", "/v1/snapshots", parse)


def get_snapshot(snapshot_id: str) -> Call[Snapshot]:
    """``GET /v1/snapshots/{id}``."""
    return Call("GET", f"/v1/snapshots/{_segment(snapshot_id)}", lambda r: Snapshot.from_json(_json(r)))


def delete_snapshot(snapshot_id: str) -> Call[None]:
    """``DELETE /v1/snapshots/{id}``."""
    return Call("DELETE", f"/v1/snapshots/{_segment(snapshot_id)}", _nothing)


def fork(lease_id: str, count: int, ttl: Seconds | None) -> Call[list[LeaseInfo | FirepitError]]:
    """``POST /v1/leases/{id}/fork``: one outcome per fork, a lease or the error it failed with."""
    if not 1 <= count <= FORK_MAX:
        raise ValueError(f"count must be 1 to {FORK_MAX}, not {count}")
    body: dict[str, Any] = {"count": count}
    if ttl is not None:
        body["ttl_ms"] = to_ms(ttl, "ttl")

    def parse(response: httpx.Response) -> list[LeaseInfo | FirepitError]:
        data = _json(response)
        if not isinstance(data, dict) or not isinstance(data.get("forks"), list):
            raise ValueError("expected {forks: [...]}")
        outcomes: list[LeaseInfo | FirepitError] = []
        for item in data["forks"]:
            item = _object(item, "fork")
            if isinstance(item.get("lease"), dict):
                outcomes.append(LeaseInfo.from_json(item["lease"]))
            else:
                error = _object(item.get("error"), "fork error")
                outcomes.append(error_from_code(_str(error, "error"), _str(error, "message")))
        return outcomes

    return Call("POST", f"/v1/leases/{_segment(lease_id)}/fork", parse, body, server_time=120.0)
