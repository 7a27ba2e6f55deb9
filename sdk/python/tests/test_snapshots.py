"""Snapshots and forks on a real daemon: a file written before ``vm.snapshot()`` is in a lease
started from it; ``client.snapshots()`` lists it until ``delete_snapshot``, after which starting
from it raises ``SnapshotNotFound``; ``vm.fork(n)`` gives ``n`` leases with their own hostname
that see the parent's files, sync and async."""

from __future__ import annotations

import pytest

import firepit


def test_a_snapshot_starts_leases_with_its_files_until_it_is_deleted(client: firepit.Client) -> None:
    with client.lease("default", wait=60) as vm:
        vm.exec(["sh", "-c", "echo prepared > /root/note"])
        snapshot = vm.snapshot()
        assert (snapshot.source_lease_id, snapshot.shape) == (vm.id, "default")
        assert snapshot.size_bytes > 0
        assert snapshot.id in [s.id for s in client.snapshots()]
        with client.lease_from_snapshot(snapshot.id, ttl=120) as copy:
            assert copy.shape == "default" and copy.id != vm.id
            assert copy.exec(["cat", "/root/note"]).stdout == b"prepared\n"
        client.delete_snapshot(snapshot.id)
        assert snapshot.id not in [s.id for s in client.snapshots()]
        with pytest.raises(firepit.SnapshotNotFound):
            client.lease_from_snapshot(snapshot.id)
        with pytest.raises(firepit.SnapshotNotFound):
            client.delete_snapshot(snapshot.id)


def test_forks_see_the_parents_files_with_their_own_hostname(client: firepit.Client) -> None:
    with client.lease("default", wait=60) as vm:
        vm.exec(["sh", "-c", "echo parent > /root/note"])
        forks = vm.fork(2, ttl=120)
        assert len(forks) == 2
        names = {vm.exec(["hostname"]).stdout}
        for fork in forks:
            assert isinstance(fork, firepit.Lease), fork
            with fork:
                assert fork.exec(["cat", "/root/note"]).stdout == b"parent\n"
                names.add(fork.exec(["hostname"]).stdout)
        assert len(names) == 3, names
        with pytest.raises(ValueError, match="count must be 1 to 16"):
            vm.fork(0)


@pytest.mark.anyio
async def test_an_async_lease_snapshots_and_forks(aclient: firepit.AsyncClient) -> None:
    vm = await aclient.lease("default", wait=60)
    try:
        await vm.exec(["sh", "-c", "echo async > /root/note"])
        snapshot = await vm.snapshot()
        async with aclient.lease_from_snapshot(snapshot.id) as copy:
            assert (await copy.exec(["cat", "/root/note"])).stdout == b"async\n"
        await aclient.delete_snapshot(snapshot.id)
        assert snapshot.id not in [s.id for s in await aclient.snapshots()]
        (fork,) = await vm.fork(1)
        assert isinstance(fork, firepit.AsyncLease), fork
        try:
            assert (await fork.exec(["cat", "/root/note"])).stdout == b"async\n"
        finally:
            await fork.release()
    finally:
        await vm.release()
