"""Leases on a real daemon: the context manager releases (on exceptions too), idempotent
acquires, renew, TTLs, and the error of each wrong use; sync and async."""

from __future__ import annotations

import time
import uuid

import pytest

import firepit


class Boom(Exception):
    pass


def assert_gone(client: firepit.Client, lease_id: str) -> None:
    """The daemon no longer knows the lease."""
    raw = client.request("POST", f"/v1/leases/{lease_id}/renew")
    assert isinstance(firepit.error_from_response(raw), firepit.LeaseNotFound), raw.text


def test_with_block_releases_the_lease(client: firepit.Client) -> None:
    with client.lease("default", wait=60) as vm:
        assert vm.shape == "default" and vm.id.startswith("l-") and not vm.released
        assert vm.expires_at.tzinfo is not None
        assert vm.exec(["true"]).ok
    assert vm.released
    assert_gone(client, vm.id)
    with pytest.raises(firepit.LeaseNotFound) as raised:
        vm.exec(["true"])
    assert raised.value.status == 404
    vm.release()  # a second release is a no-op


def test_with_block_releases_the_lease_on_an_exception(client: firepit.Client) -> None:
    with pytest.raises(Boom), client.lease("default", wait=60) as vm:
        raise Boom()
    assert vm.released
    assert_gone(client, vm.id)


def test_explicit_release_then_renew_is_lease_not_found(client: firepit.Client) -> None:
    vm = client.lease("default", wait=60)
    vm.release()
    with pytest.raises(firepit.LeaseNotFound):
        vm.renew(60)


def test_same_idempotency_key_returns_the_same_lease(client: firepit.Client) -> None:
    key = f"sdk-{uuid.uuid4()}"
    with client.lease("default", wait=60, idempotency_key=key) as first:
        again = client.lease("default", wait=60, idempotency_key=key)
        assert again.id == first.id and again.vm_id == first.vm_id
        assert again.info.replayed and not first.info.replayed
        with pytest.raises(firepit.IdempotencyConflict) as raised:
            client.lease("other-shape", wait=0, idempotency_key=key)
        assert raised.value.status == 422


def test_renew_moves_the_expiry(client: firepit.Client) -> None:
    with client.lease("default", wait=60, ttl=30) as vm:
        before = vm.expires_at
        info = vm.renew(600)
        assert info.id == vm.id and vm.expires_at == info.expires_at
        assert (vm.expires_at - before).total_seconds() > 500
        with pytest.raises(firepit.BadTtl) as raised:
            vm.renew(0)
        assert raised.value.code == "bad_ttl" and raised.value.status == 400


def test_a_ttl_over_the_maximum_is_bad_ttl(client: firepit.Client) -> None:
    with pytest.raises(firepit.BadTtl, match="ttl_ms"):
        client.lease("default", wait=60, ttl=7200)


def test_an_unknown_shape_is_unknown_shape(client: firepit.Client) -> None:
    with pytest.raises(firepit.UnknownShape) as raised:
        client.lease("no-such-shape", wait=0)
    assert raised.value.status == 404 and "no-such-shape" in raised.value.message


def test_an_expired_lease_counts_as_released_at_the_end_of_the_block(client: firepit.Client) -> None:
    with client.lease("default", wait=60, ttl=1) as vm:
        deadline = time.monotonic() + 15
        while True:
            try:
                vm.exec(["true"])
            except firepit.LeaseNotFound:
                break
            assert time.monotonic() < deadline, "the lease did not expire"
            time.sleep(0.2)
    assert vm.released


@pytest.mark.anyio
async def test_async_with_block_releases_the_lease(
    aclient: firepit.AsyncClient, client: firepit.Client
) -> None:
    async with aclient.lease("default", wait=60) as vm:
        assert isinstance(vm, firepit.AsyncLease)
        assert (await vm.exec(["true"])).ok
    assert vm.released
    assert_gone(client, vm.id)
    with pytest.raises(firepit.LeaseNotFound):
        await vm.exec(["true"])


@pytest.mark.anyio
async def test_async_with_block_releases_the_lease_on_an_exception(
    aclient: firepit.AsyncClient, client: firepit.Client
) -> None:
    with pytest.raises(Boom):
        async with aclient.lease("default", wait=60) as vm:
            raise Boom()
    assert vm.released
    assert_gone(client, vm.id)


@pytest.mark.anyio
async def test_async_awaited_lease_renews_and_releases(aclient: firepit.AsyncClient) -> None:
    key = f"sdk-{uuid.uuid4()}"
    vm = await aclient.lease("default", wait=60, ttl=30, idempotency_key=key)
    try:
        again = await aclient.lease("default", wait=60, idempotency_key=key)
        assert again.id == vm.id and again.info.replayed
        info = await vm.renew(600)
        assert info.expires_at == vm.expires_at
        with pytest.raises(firepit.BadTtl):
            await vm.renew(0)
    finally:
        await vm.release()
    assert vm.released
    with pytest.raises(firepit.LeaseNotFound):
        await vm.renew()


@pytest.mark.anyio
async def test_async_errors_are_typed(aclient: firepit.AsyncClient) -> None:
    with pytest.raises(firepit.UnknownShape):
        await aclient.lease("no-such-shape", wait=0)
    with pytest.raises(firepit.BadTtl):
        async with aclient.lease("default", wait=60, ttl=7200):
            pytest.fail("a lease with a TTL over the maximum must not be handed out")
