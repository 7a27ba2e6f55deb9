"""What a leased VM uses, as the daemon samples it every few seconds
(``GET /v1/leases/{id}/metrics``): :class:`UsageSample` and :class:`LeaseMetrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .models import _int, _object, _str

__all__ = ["LeaseMetrics", "UsageSample"]


def _opt_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"`{key}` is not a number: {value!r}")
    return float(value)


def _opt_count(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None else _int(data, key)


@dataclass(frozen=True)
class UsageSample:
    """One sample of a lease's usage. A part the daemon could not read is ``None`` (e.g. the CPU
    in the first sample, the guest's part of a paused lease).

    Attributes:
        at: when it was taken (UTC).
        at_unix_ms: the same, ms since the Unix epoch (pass it as ``since`` to poll).
        cpus: the VM's vCPUs.
        cpu_percent: CPU used since the previous sample, percent of all its vCPUs.
        memory_used_bytes: guest memory in use (total minus available).
        memory_total_bytes: guest memory in all.
        memory_cache_bytes: guest page cache.
        host_rss_bytes: resident memory of the VM's QEMU on the host.
        host_pss_bytes: its proportional set size (in one sample a minute).
        disk_used_bytes: used size of the guest's ``/``.
        disk_total_bytes: size of the guest's ``/``.
        disk_overlay_bytes: what the VM's disk overlay occupies on the host.
        net_rx_bytes: bytes the guest received since it started.
        net_tx_bytes: bytes the guest sent.
        oom_kills: processes the guest's OOM killer killed during the lease.

    Example::

        for sample in vm.metrics():
            print(sample.at, sample.cpu_percent, sample.memory_used_bytes)
    """

    at: datetime
    at_unix_ms: int
    cpus: int
    cpu_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    memory_cache_bytes: int | None
    host_rss_bytes: int | None
    host_pss_bytes: int | None
    disk_used_bytes: int | None
    disk_total_bytes: int | None
    disk_overlay_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None
    oom_kills: int

    @classmethod
    def from_json(cls, body: Any) -> UsageSample:
        """Parses a ``UsageSample``."""
        data = _object(body, "usage sample")
        _str(data, "at")  # the same instant as at_unix_ms, which is exact
        at_unix_ms = _int(data, "at_unix_ms")
        return cls(
            at=datetime.fromtimestamp(at_unix_ms / 1000, tz=UTC),
            at_unix_ms=at_unix_ms,
            cpus=_int(data, "cpus"),
            cpu_percent=_opt_number(data, "cpu_percent"),
            memory_used_bytes=_opt_count(data, "memory_used_bytes"),
            memory_total_bytes=_opt_count(data, "memory_total_bytes"),
            memory_cache_bytes=_opt_count(data, "memory_cache_bytes"),
            host_rss_bytes=_opt_count(data, "host_rss_bytes"),
            host_pss_bytes=_opt_count(data, "host_pss_bytes"),
            disk_used_bytes=_opt_count(data, "disk_used_bytes"),
            disk_total_bytes=_opt_count(data, "disk_total_bytes"),
            disk_overlay_bytes=_opt_count(data, "disk_overlay_bytes"),
            net_rx_bytes=_opt_count(data, "net_rx_bytes"),
            net_tx_bytes=_opt_count(data, "net_tx_bytes"),
            oom_kills=_int(data, "oom_kills"),
        )


@dataclass(frozen=True)
class LeaseMetrics:
    """The samples the daemon keeps for a lease (``GET /v1/leases/{id}/metrics``).

    Attributes:
        lease_id: the lease.
        shape: its shape.
        interval: seconds between two samples.
        capacity: most samples kept (the oldest go first).
        ended: the lease has ended (its samples stay readable a while).
        samples: the samples, oldest first.
    """

    lease_id: str
    shape: str
    interval: float
    capacity: int
    ended: bool
    samples: list[UsageSample]

    @classmethod
    def from_json(cls, body: Any) -> LeaseMetrics:
        """Parses a ``LeaseMetrics`` body."""
        data = _object(body, "lease metrics")
        samples = data.get("samples")
        if not isinstance(samples, list):
            raise ValueError("lease metrics: `samples` is not a list")
        return cls(
            lease_id=_str(data, "lease_id"),
            shape=_str(data, "shape"),
            interval=_int(data, "interval_ms") / 1000,
            capacity=_int(data, "capacity"),
            ended=bool(data.get("ended", False)),
            samples=[UsageSample.from_json(s) for s in samples],
        )
