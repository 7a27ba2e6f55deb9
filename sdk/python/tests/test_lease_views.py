"""Lease views, labels, attach, pause and resume, and the event feed on a real daemon: a lease
acquired with metadata is listed by it, attached to by id from another handle, and its end
(released, with its reason) shows in its view and in the events, in order; a lease paused and
resumed keeps its files, and calls while it is paused raise ``LeasePaused``."""

from __future__ import annotations

import uuid

import pytest

import firepit


def test_leases_are_listed_by_label_attached_to_and_their_end_is_an_event(client: firepit.Client) -> None:
    job = uuid.uuid4().hex[:12]
    vm = client.lease("default", wait=60, metadata={"job": job})
    try:
        (view,) = client.leases(state="running", metadata={"job": job})
        assert (view.id, view.state, view.metadata) == (vm.id, "running", {"job": job})
        assert view.pid is not None and view.expires_at.tzinfo is not None
        assert client.leases(metadata={"job": "not-" + job}) == []
        attached = client.attach(vm.id)
        assert attached.exec(["echo", "hi"]).stdout == b"hi\n"
    finally:
        vm.release()
    ended = client.lease_view(vm.id)
    assert (ended.state, ended.end_reason) == ("ended", "released")
    with pytest.raises(firepit.LeaseEnded):
        client.attach(vm.id)
    seen = []
    for event in client.events(lease_id=vm.id, after=0):
        seen.append((event.kind, event.reason, event.metadata.get("job")))
        if event.kind == "lease.ended":
            break
    assert seen == [("lease.created", None, job), ("lease.ended", "released", job)]
    # The stream's own id resumes it (a daemon's is the event id; a gateway's a cursor).
    created = next(iter(client.events(lease_id=vm.id, after=0)))
    assert created.resume_id == str(created.id)
    resumed = next(iter(client.events(lease_id=vm.id, after=created.resume_id)))
    assert (resumed.kind, resumed.reason) == ("lease.ended", "released")


def test_metadata_over_its_limits_is_a_bad_metadata_error(client: firepit.Client) -> None:
    with pytest.raises(firepit.BadMetadata):
        client.lease("default", wait=60, metadata={f"k{i}": "v" for i in range(100)})


def test_a_lease_pauses_and_resumes_with_its_files(client: firepit.Client) -> None:
    vm = client.lease("default", wait=60)
    try:
        vm.exec(["sh", "-c", "echo kept > /root/note"])
        assert vm.pause().state == "paused"
        assert vm.pause().state == "paused", "pausing a paused lease returns its view"
        with pytest.raises(firepit.LeasePaused):
            vm.exec(["true"])
        assert vm.resume().state == "running"
        assert vm.resume().state == "running", "resuming a running lease returns its view"
        assert vm.exec(["cat", "/root/note"]).stdout == b"kept\n"
    finally:
        vm.release()


@pytest.mark.anyio
async def test_an_async_lease_pauses_and_resumes(aclient: firepit.AsyncClient) -> None:
    vm = await aclient.lease("default", wait=60)
    try:
        await vm.exec(["sh", "-c", "echo kept > /root/note"])
        assert (await vm.pause()).state == "paused"
        assert (await vm.resume()).state == "running"
        assert (await vm.exec(["cat", "/root/note"])).stdout == b"kept\n"
    finally:
        await vm.release()
