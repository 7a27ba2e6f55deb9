"""Reaching the daemon: TCP needs the bearer token, the environment names the daemon, and no
daemon at all is a ConnectError that says how to start one; sync and async."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Daemon, free_tcp_port

import firepit


def test_tcp_without_a_token_is_unauthorized(daemon: Daemon) -> None:
    with firepit.Client(url=daemon.url) as client, pytest.raises(firepit.Unauthorized) as raised:
        client.pools()
    assert raised.value.status == 401 and "Bearer" in raised.value.message


def test_tcp_with_a_wrong_token_is_unauthorized(daemon: Daemon) -> None:
    client = firepit.Client(url=daemon.url, token="wrong-token-0123456789")
    with client, pytest.raises(firepit.Unauthorized, match="wrong"):
        client.healthz()


def test_tcp_with_the_token_leases_and_runs(daemon: Daemon) -> None:
    with firepit.Client(url=daemon.url, token=daemon.token) as client:
        assert client.healthz().status == "ok"
        with client.lease("default", wait=60) as vm:
            assert vm.exec(["echo", "over tcp"]).stdout == b"over tcp\n"


def test_tcp_with_the_token_carries_files_streams_and_terminals(daemon: Daemon) -> None:
    with firepit.Client(url=daemon.url, token=daemon.token) as client, client.lease("default", wait=60) as vm:
        vm.write_file("/tmp/tcp.txt", "over tcp\n")
        assert vm.read_bytes("/tmp/tcp.txt") == b"over tcp\n"
        with vm.exec_stream(["cat", "/tmp/tcp.txt"]) as events:
            assert [e.data for e in events if isinstance(e, firepit.Output)] == [b"over tcp\n"]
        # The terminal's WebSocket carries the token too; without it the upgrade is refused.
        with vm.pty(["sh", "-c", "stty size"], rows=7, cols=33) as term:
            assert b"7 33" in term.read_until("7 33")
            assert term.wait(timeout=30).exit_code == 0
        with firepit.Client(url=daemon.url) as stranger, pytest.raises(firepit.Unauthorized):
            firepit.Lease(stranger, vm.info).pty()


@pytest.mark.anyio
async def test_tcp_needs_the_token_async(daemon: Daemon) -> None:
    async with firepit.AsyncClient(url=daemon.url) as client:
        with pytest.raises(firepit.Unauthorized):
            await client.pools()
    async with firepit.AsyncClient(url=daemon.url, token=daemon.token) as client:
        assert (await client.pools()).shape("default").depth_high == 2


def test_the_environment_names_the_daemon(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREPIT_URL", daemon.url)
    monkeypatch.setenv("FIREPIT_TOKEN", daemon.token)
    with firepit.Client() as client:
        assert client.endpoint.url == daemon.url and client.healthz().status == "ok"
    monkeypatch.delenv("FIREPIT_URL")
    monkeypatch.setenv("FIREPIT_SOCKET", str(daemon.socket))
    with firepit.Client() as client:
        assert client.endpoint.socket == daemon.socket and client.healthz().status == "ok"


def test_no_daemon_on_the_socket_is_a_connect_error_with_a_hint(tmp_path: Path) -> None:
    with firepit.Client(tmp_path / "nobody.sock") as client, pytest.raises(firepit.ConnectError) as raised:
        client.pools()
    error = raised.value
    assert error.code == "connect" and error.status is None
    assert str(tmp_path / "nobody.sock") in error.message and "firepit serve" in error.message


@pytest.mark.anyio
async def test_no_daemon_on_the_port_is_a_connect_error_async() -> None:
    async with firepit.AsyncClient(url=f"http://127.0.0.1:{free_tcp_port()}", token="x" * 16) as client:
        with pytest.raises(firepit.ConnectError, match="firepit serve"):
            await client.healthz()
