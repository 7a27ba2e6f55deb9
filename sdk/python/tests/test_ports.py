"""Networking through the SDK on a real daemon: a shape with NAT registered at run time
(``network=``), a port forward to an HTTP server in the guest (sync and async), the forward gone
with the lease, per-lease egress (narrowing accepted, widening refused before a VM is taken) and
the typed errors of a shape without a network.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from harness import Daemon

import firepit

SHAPE = "sdk-net"
PAGE = "hello from the guest\n"


def wait_until_ready(client: firepit.Client, name: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while (status := client.pools().shape(name)).ready < 1:
        assert status.consecutive_failures == 0, status.last_error
        assert time.monotonic() < deadline, f"shape {name} not ready: {status}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def net_shape(daemon: Daemon) -> Iterator[str]:
    """A NAT shape whose egress allows only 10.0.0.0/8 (nothing the tests reach: only the policy
    matters here), registered for this module and unregistered after."""
    with firepit.Client(daemon.socket) as client:
        client.register_shape(
            SHAPE,
            daemon.image,
            depth_low=1,
            depth_high=1,
            network={"mode": "nat", "egress": ["10.0.0.0/8"]},
        )
        try:
            wait_until_ready(client, SHAPE)
            yield SHAPE
        finally:
            client.unregister_shape(SHAPE)


def serve_page(vm: firepit.Lease) -> None:
    vm.mkdir("/www")
    vm.write_file("/www/index.html", PAGE)
    vm.start_process(["httpd", "-f", "-p", "8000", "-h", "/www"], tag="httpd")


def get_page(url: str, within: float = 20) -> httpx.Response:
    """The page, retried while httpd is still starting in the guest."""
    deadline = time.monotonic() + within
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_forward_reaches_a_guest_server_and_ends_with_the_lease(
    client: firepit.Client, net_shape: str
) -> None:
    with client.lease(net_shape, wait=60) as vm:
        serve_page(vm)
        forward = vm.forward_port(8000)
        assert forward.guest_port == 8000 and forward.host == "127.0.0.1" and forward.port > 0
        assert get_page(f"http://{forward.host_addr}/index.html").text == PAGE
        assert vm.forward_port(8000) == forward, "the same port again is the same forward"
        assert vm.ports() == [forward]
        vm.remove_forward(8000)
        assert vm.ports() == []
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{forward.host_addr}/index.html", timeout=5)
        with pytest.raises(firepit.ForwardNotFound) as missing:
            vm.remove_forward(8000)
        assert missing.value.status == 404
        forward = vm.forward_port(8000)
        assert get_page(f"http://{forward.host_addr}/index.html").text == PAGE
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{forward.host_addr}/index.html", timeout=5)


@pytest.mark.anyio
async def test_async_forward(aclient: firepit.AsyncClient, net_shape: str) -> None:
    async with aclient.lease(net_shape, wait=60) as vm:
        await vm.mkdir("/www")
        await vm.write_file("/www/index.html", PAGE)
        await vm.start_process(["httpd", "-f", "-p", "8001", "-h", "/www"], tag="httpd")
        forward = await vm.forward_port(8001)
        assert await vm.ports() == [forward]
        await vm.remove_forward(8001)
        assert await vm.ports() == []
        forward = await vm.forward_port(8001)
        page = None
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    page = (await http.get(f"http://{forward.host_addr}/index.html", timeout=5)).text
                    break
                await anyio.sleep(0.2)
        assert page == PAGE


def test_a_shape_without_network_raises_network_disabled(client: firepit.Client) -> None:
    with client.lease("default", wait=60) as vm:
        with pytest.raises(firepit.NetworkDisabled) as raised:
            vm.forward_port(8000)
        assert raised.value.status == 409 and "network" in str(raised.value)
        with pytest.raises(ValueError, match="guest_port must be a TCP port"):
            vm.forward_port(0)
    with pytest.raises(firepit.NetworkDisabled):
        client.lease("default", wait=60, egress=["10.0.0.0/8"])


def test_egress_narrows_at_acquire_and_widening_is_refused(client: firepit.Client, net_shape: str) -> None:
    with client.lease(net_shape, wait=60, egress=["10.1.0.0/16:443"]) as vm:
        assert vm.exec(["true"]).exit_code == 0
    with client.lease(net_shape, wait=60, egress="deny") as vm:
        assert vm.exec(["true"]).exit_code == 0
    leased = client.pools().shape(net_shape).leased
    for wider in ("allow", ["0.0.0.0/0"], ["pypi.org:443"]):
        with pytest.raises(firepit.EgressWidens) as raised:
            client.lease(net_shape, wait=60, egress=wider)
        assert raised.value.status == 400 and isinstance(raised.value, firepit.BadRequest)
    assert client.pools().shape(net_shape).leased == leased, "a refused acquire took no VM"


def test_port_forward_parsing() -> None:
    assert (
        firepit.PortForward.from_json({"guest_port": 80, "host_addr": "[::1]:4242"}).host_addr == "[::1]:4242"
    )
    with pytest.raises(ValueError, match="expected"):
        firepit.PortForward.from_json({"guest_port": 80})
