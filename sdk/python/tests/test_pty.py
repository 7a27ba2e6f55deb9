"""Terminals over the daemon's WebSocket in a real VM: size and resize, input, signals, the exit
status; sync over the Unix socket, async over TCP with the token."""

from __future__ import annotations

import time

import pytest
from harness import Daemon

import firepit


def test_a_terminal_follows_its_size_and_reports_the_exit_status(daemon: Daemon) -> None:
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as vm:
        with vm.pty(rows=30, cols=90, env={"GREETING": "hello"}) as term:
            term.write("stty size; echo $GREETING\n")
            assert b"30 90" in term.read_until("hello\r\n")
            term.resize(40, 120)
            term.write("stty size\n")
            term.read_until("40 120")
            # A foreground job that says when its trap is set and when SIGINT reaches it (the
            # typed line holds neither `armed-42` nor `got-42`; a SIGINT sent before the trap was
            # set would kill the job silently).
            term.write(
                'sh -c \'trap "echo got-$((40+2)); exit 3" INT; echo armed-$((40+2));'
                " while :; do sleep 0.1; done'\n"
            )
            term.read_until("armed-42")
            term.signal("INT")
            term.read_until("got-42")
            term.write("exit 5\n")
            assert term.wait(timeout=30).exit_code == 5
            assert term.pid is not None and term.exit_status is not None
        # Closing a terminal whose program still runs is prompt (the daemon answers the close).
        term = vm.pty(["sleep", "100"])
        started = time.monotonic()
        term.close()
        assert time.monotonic() - started < 3
        with pytest.raises(firepit.ExecRefused):
            vm.pty(["/no/such/program"])


@pytest.mark.anyio
async def test_a_terminal_async_over_tcp(daemon: Daemon) -> None:
    client = firepit.AsyncClient(url=daemon.url, token=daemon.token)
    async with client, client.lease("default", wait=60) as vm, await vm.pty(["sh"], rows=24, cols=80) as term:
        await term.resize(33, 101)
        await term.write(b"stty size; exit 2\n")
        assert b"33 101" in await term.read_until("33 101")
        assert (await term.wait(timeout=30)).exit_code == 2
