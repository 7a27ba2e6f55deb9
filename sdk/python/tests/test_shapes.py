"""Shapes at run time on a real daemon: register, drain to ``exhausted``, unregister; and the
errors of each wrong use; sync and async.

The drained pool is a cold-boot shape of depth 1: after its one VM is leased, its replacement
boots for seconds, so an acquire with ``wait=0`` in between must be ``exhausted``.
"""

from __future__ import annotations

import contextlib
import time

import anyio
import pytest
from harness import Daemon

import firepit


def wait_until_ready(client: firepit.Client, name: str, count: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while (status := client.pools().shape(name)).ready < count:
        assert status.consecutive_failures == 0, status.last_error
        assert time.monotonic() < deadline, f"shape {name} not ready: {status}"
        time.sleep(0.2)


def test_register_drain_and_unregister_a_shape(client: firepit.Client, daemon: Daemon) -> None:
    # Every setting of a shape can be given (test_api_contract.py checks the SDK names them all).
    client.register_shape(
        "sdk-cold", daemon.image, depth_high=1, fill="cold", pause_idle=False, warm_up=False
    )
    try:
        status = client.pools().shape("sdk-cold")
        assert (status.fill, status.depth_low, status.depth_high) == ("cold", 1, 1)
        with pytest.raises(firepit.ShapeExists) as exists:
            client.register_shape("sdk-cold", daemon.image)
        assert exists.value.status == 409
        wait_until_ready(client, "sdk-cold", 1)
        with client.lease("sdk-cold", wait=0) as vm:
            with pytest.raises(firepit.Exhausted) as raised:
                client.lease("sdk-cold", wait=0)
            assert raised.value.status == 503 and raised.value.retry_after == 1.0
            # Unregistering keeps the leased VM valid until it is released.
            client.unregister_shape("sdk-cold")
            assert vm.exec(["echo", "still here"]).stdout == b"still here\n"
        assert all(shape.name != "sdk-cold" for shape in client.pools().shapes)
    finally:
        with contextlib.suppress(firepit.UnknownShape):  # unregistered above unless a step failed
            client.unregister_shape("sdk-cold")
    with pytest.raises(firepit.UnknownShape):
        client.unregister_shape("sdk-cold")
    with pytest.raises(firepit.UnknownShape):
        client.lease("sdk-cold", wait=0)


def test_an_invalid_shape_is_refused(client: firepit.Client, daemon: Daemon) -> None:
    with pytest.raises(firepit.InvalidShape) as raised:
        client.register_shape("sdk-invalid", daemon.image, cpus=0)
    assert raised.value.status == 422 and "cpus" in raised.value.message
    assert all(shape.name != "sdk-invalid" for shape in client.pools().shapes)


@pytest.mark.anyio
async def test_register_and_unregister_async(aclient: firepit.AsyncClient, daemon: Daemon) -> None:
    await aclient.register_shape(
        "sdk-async", daemon.image, depth_high=1, fill="cold", pause_idle=True, warm_up=False
    )
    try:
        assert (await aclient.pools()).shape("sdk-async").fill == "cold"
        with pytest.raises(firepit.ShapeExists):
            await aclient.register_shape("sdk-async", daemon.image)
    finally:
        await aclient.unregister_shape("sdk-async")
    with pytest.raises(firepit.UnknownShape):
        await aclient.unregister_shape("sdk-async")
    with pytest.raises(firepit.InvalidShape):
        await aclient.register_shape("sdk-async", daemon.image, depth_low=3, depth_high=1)


def test_a_shape_setting_of_the_wrong_type_is_refused(client: firepit.Client, daemon: Daemon) -> None:
    with pytest.raises(firepit.BadRequest) as raised:
        client.register_shape("sdk-typo", daemon.image, warm_up="no")  # type: ignore[arg-type]
    assert raised.value.code == "bad_json" and raised.value.status == 400
    assert all(shape.name != "sdk-typo" for shape in client.pools().shapes)


@pytest.mark.anyio
async def test_exhausted_async(aclient: firepit.AsyncClient, daemon: Daemon) -> None:
    await aclient.register_shape("sdk-drain", daemon.image, depth_low=1, depth_high=1, fill="cold")
    try:
        with anyio.fail_after(120):
            while (await aclient.pools()).shape("sdk-drain").ready < 1:
                await anyio.sleep(0.2)
        async with aclient.lease("sdk-drain", wait=0):
            with pytest.raises(firepit.Exhausted) as raised:
                await aclient.lease("sdk-drain", wait=0)
            assert raised.value.retry_after == 1.0
    finally:
        await aclient.unregister_shape("sdk-drain")
