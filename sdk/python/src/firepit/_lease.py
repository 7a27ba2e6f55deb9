"""What a sync :class:`firepit.Lease` and an async :class:`firepit.AsyncLease` share: the lease's
identity and expiry, and the rule for releasing it when a ``with`` block ends."""

from __future__ import annotations

import logging
from datetime import datetime

from .errors import FirepitError, LeaseNotFound
from .models import LeaseInfo

log = logging.getLogger("firepit")


class LeaseBase:
    """A leased VM's identity; subclasses add the calls."""

    def __init__(self, info: LeaseInfo) -> None:
        self._info = info
        self._released = False

    @property
    def info(self) -> LeaseInfo:
        """The lease as last reported by the daemon (acquire, then each renew)."""
        return self._info

    @property
    def id(self) -> str:
        """The lease id."""
        return self._info.id

    @property
    def vm_id(self) -> str:
        """The leased VM's id."""
        return self._info.vm_id

    @property
    def shape(self) -> str:
        """The VM's shape."""
        return self._info.shape

    @property
    def expires_at(self) -> datetime:
        """When the daemon reclaims the VM unless the lease is renewed (UTC)."""
        return self._info.expires_at

    @property
    def released(self) -> bool:
        """True once :meth:`release` succeeded (or found the lease gone)."""
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else f"expires {self._info.expires_at.isoformat()}"
        return f"<{type(self).__name__} {self.id} vm={self.vm_id} shape={self.shape} {state}>"


def release_failed_on_exit(lease_id: str, error: FirepitError, body_raised: bool) -> bool:
    """Whether a ``with`` block's exit swallows a failed release (else it re-raises it).

    ``lease_not_found`` is swallowed: the lease expired or was released elsewhere, so the VM is
    gone, which is all the exit wanted. Any other failure is raised, unless the block itself
    raised: then that exception goes on (the one the caller needs) and the release failure is
    logged.
    """
    if isinstance(error, LeaseNotFound):
        return True
    if body_raised:
        log.warning("could not release lease %s while handling an exception: %s", lease_id, error)
        return True
    return False
