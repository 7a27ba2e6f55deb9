"""Terminals through E2B's SDK: create, type, resize, connect, kill."""

from __future__ import annotations

import time

import pytest

from e2b import CommandExitException, Sandbox
from e2b.sandbox.commands.command_handle import PtySize


def read_until(chunks: list[bytes], needle: bytes, handle_iter: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    for _, _, pty in handle_iter:  # type: ignore[attr-defined]
        if pty:
            chunks.append(pty)
        if needle in b"".join(chunks) or time.monotonic() > deadline:
            return


def test_a_terminal_takes_input_resizes_and_exits(sandbox: Sandbox) -> None:
    terminal = sandbox.pty.create(PtySize(rows=24, cols=80))
    events = iter(terminal)
    sandbox.pty.send_stdin(terminal.pid, b"stty size; whoami; echo END$((1+1))\n")
    seen: list[bytes] = []
    read_until(seen, b"END2", events)
    assert b"24 80\r\nuser\r\n" in b"".join(seen)
    sandbox.pty.resize(terminal.pid, PtySize(rows=40, cols=120))
    sandbox.pty.send_stdin(terminal.pid, b"stty size; echo END$((2+1)); exit 7\n")
    seen.clear()
    read_until(seen, b"END3", events)
    assert b"40 120" in b"".join(seen)
    with pytest.raises(CommandExitException) as exited:
        terminal.wait()
    assert exited.value.exit_code == 7


def test_a_terminal_is_killed_and_connected_to(sandbox: Sandbox) -> None:
    terminal = sandbox.pty.create(PtySize(rows=24, cols=80))
    again = sandbox.pty.connect(terminal.pid)
    assert again.pid == terminal.pid
    assert sandbox.pty.kill(terminal.pid)
    assert terminal.pid not in [p.pid for p in sandbox.commands.list()] or _gone_soon(sandbox, terminal.pid)


def _gone_soon(sandbox: Sandbox, pid: int) -> bool:
    for _ in range(50):
        if pid not in [p.pid for p in sandbox.commands.list()]:
            return True
        time.sleep(0.1)
    return False
