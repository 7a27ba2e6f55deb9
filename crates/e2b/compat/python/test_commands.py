"""Commands through E2B's SDK: foreground and background, stdin, kill, list, connect, environment,
users, timeouts, and the exit and error shapes the SDK expects."""

from __future__ import annotations

import time

import pytest

from e2b import CommandExitException, NotFoundException, Sandbox, SandboxNotRunningException, TimeoutException


def test_a_foreground_command_returns_its_output_and_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.commands.run('echo "hello, world"; echo oops >&2')
    assert (result.exit_code, result.stdout, result.stderr) == (0, "hello, world\n", "oops\n")


def test_a_failing_command_raises_with_its_exit_code_and_output(sandbox: Sandbox) -> None:
    with pytest.raises(CommandExitException) as raised:
        sandbox.commands.run("echo partial; exit 3")
    assert raised.value.exit_code == 3
    assert raised.value.stdout == "partial\n"
    assert raised.value.error == "exit status 3"


def test_commands_run_as_user_in_their_home_and_as_root_when_asked(sandbox: Sandbox) -> None:
    assert sandbox.commands.run("whoami; pwd; echo $HOME").stdout == "user\n/home/user\n/home/user\n"
    assert sandbox.commands.run("whoami", user="root").stdout == "root\n"
    assert sandbox.commands.run("sudo -n whoami").stdout == "root\n"


def test_environment_and_working_directory(sandbox: Sandbox) -> None:
    result = sandbox.commands.run("echo $GREETING; pwd", envs={"GREETING": "hi"}, cwd="/tmp")
    assert result.stdout == "hi\n/tmp\n"
    # A command's variables are its own.
    assert sandbox.commands.run('echo "[$GREETING]"').stdout == "[]\n"


def test_sandbox_environment_reaches_every_command(daemon: object) -> None:
    sbx = Sandbox.create(envs={"FROM_CREATE": "yes"}, timeout=120)
    try:
        assert sbx.commands.run("echo $FROM_CREATE").stdout == "yes\n"
        assert sbx.commands.run("echo $FROM_CREATE", envs={"FROM_CREATE": "mine"}).stdout == "mine\n"
    finally:
        sbx.kill()


def test_output_streams_to_callbacks_as_it_is_written(sandbox: Sandbox) -> None:
    seen: list[str] = []
    sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 0.1; done", on_stdout=seen.append)
    assert "".join(seen) == "1\n2\n3\n"


def test_background_commands_are_listed_connected_to_and_killed(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30", background=True)
    assert handle.pid in [p.pid for p in sandbox.commands.list()]
    listed = next(p for p in sandbox.commands.list() if p.pid == handle.pid)
    assert listed.cmd == "/bin/bash" and listed.args[-1] == "sleep 30"
    again = sandbox.commands.connect(handle.pid)
    assert again.pid == handle.pid
    assert sandbox.commands.kill(handle.pid)
    with pytest.raises(CommandExitException) as raised:
        handle.wait()
    assert raised.value.exit_code == -1
    assert handle.pid not in [p.pid for p in sandbox.commands.list()]


def test_a_background_command_outlives_its_client_and_reconnects(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 1; echo done", background=True)
    handle.disconnect()
    result = sandbox.commands.connect(handle.pid).wait()
    assert result.exit_code == 0


def test_unknown_processes_are_not_found(sandbox: Sandbox) -> None:
    assert sandbox.commands.kill(999_999) is False
    with pytest.raises(NotFoundException):
        sandbox.commands.connect(999_999)


def test_stdin_is_sent_and_closed(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("cat", background=True, stdin=True)
    handle.send_stdin("hello ")
    sandbox.commands.send_stdin(handle.pid, b"stdin")
    handle.close_stdin()
    assert handle.wait().stdout == "hello stdin"


def test_a_too_short_timeout_raises_and_kills_the_command(sandbox: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 30; echo never > /tmp/too-short", timeout=1)
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert "sleep 30" not in sandbox.commands.run("ps ax -o args").stdout


def test_broken_utf8_is_replaced_not_fatal(sandbox: Sandbox) -> None:
    assert sandbox.commands.run(r"printf 'ok\xe2'").stdout == "ok\ufffd"


def test_a_sandbox_killed_under_a_command_is_reported_gone(daemon: object) -> None:
    sbx = Sandbox.create(timeout=60)
    handle = sbx.commands.run("sleep 60", background=True)
    sbx.kill()
    with pytest.raises(SandboxNotRunningException) as raised:
        handle.wait()
    assert "killed or reached its end of life" in str(raised.value)
