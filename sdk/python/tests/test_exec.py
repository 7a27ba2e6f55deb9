"""Commands in a real VM: stdin, env, cwd, exit codes, timeouts, binary and truncated output, and
refused commands; sync (one lease shared by the module's tests) and async."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import Daemon

import firepit


@pytest.fixture(scope="module")
def vm(daemon: Daemon) -> Iterator[firepit.Lease]:
    """One leased VM for this module's sync tests (each command leaves it as it found it)."""
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as lease:
        yield lease


def test_stdout_stderr_and_exit_code(vm: firepit.Lease) -> None:
    result = vm.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.signal) == (3, None)
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert (result.stdout_text, result.stderr_text) == ("out\n", "err\n")
    assert not result.ok and not result.truncated and not result.timed_out
    assert 0 <= result.duration < 30


def test_env_and_cwd(vm: firepit.Lease) -> None:
    result = vm.exec(
        ["sh", "-c", 'echo "$GREETING $OTHER"; pwd'], env={"GREETING": "hello", "OTHER": "x y"}, cwd="/tmp"
    )
    assert result.ok and result.stdout_text == "hello x y\n/tmp\n"


def test_stdin_as_text_and_as_bytes(vm: firepit.Lease) -> None:
    assert vm.exec(["cat"], stdin="grüße\n").stdout == "grüße\n".encode()
    payload = bytes(range(256)) * 4
    result = vm.exec(["sh", "-c", "cat | wc -c"], stdin=payload)
    assert result.stdout_text.strip() == str(len(payload))


def test_binary_output_round_trips(vm: firepit.Lease) -> None:
    payload = os.urandom(200_000) + b"\xff\xfe\x00"
    result = vm.exec(["cat"], stdin=payload)
    assert result.ok and result.stdout == payload and result.stderr == b""
    result = vm.exec(["sh", "-c", r"printf '\377\000\001'; printf 'text' >&2"])
    assert result.stdout == b"\xff\x00\x01" and result.stderr == b"text"
    assert "\ufffd" in result.stdout_text


def test_a_timeout_kills_the_command(vm: firepit.Lease) -> None:
    result = vm.exec(["sleep", "30"], timeout=0.5)
    assert result.timed_out and not result.ok
    assert result.exit_code is None and result.signal == 9
    assert result.duration < 10


def test_output_is_cut_at_max_output_bytes(vm: firepit.Lease) -> None:
    result = vm.exec(["sh", "-c", "head -c 5000 /dev/zero"], max_output_bytes=100)
    assert result.truncated and result.stdout == b"\0" * 100


def test_a_missing_program_is_exec_refused(vm: firepit.Lease) -> None:
    with pytest.raises(firepit.ExecRefused) as raised:
        vm.exec(["/no/such/program"])
    assert raised.value.status == 422 and "/no/such/program" in raised.value.message
    assert vm.exec(["true"]).ok  # the VM is still usable


def test_bad_arguments_are_refused(vm: firepit.Lease) -> None:
    with pytest.raises(firepit.BadRequest) as raised:
        vm.exec(["env"], env={"A=B": "c"})
    assert raised.value.code == "bad_env"
    with pytest.raises(firepit.BadRequest) as raised:
        vm.exec([])
    assert raised.value.code == "bad_argv"
    with pytest.raises(TypeError, match="list of strings"):
        vm.exec("echo hi")  # a str is a Sequence[str]: refused at run time
    with pytest.raises(ValueError, match="positive"):
        vm.exec(["true"], timeout=0)


@pytest.mark.anyio
async def test_exec_async(aclient: firepit.AsyncClient) -> None:
    async with aclient.lease("default", wait=60) as vm:
        result = await vm.exec(
            ["sh", "-c", 'cat; echo "$X" >&2; pwd; exit 4'], env={"X": "y"}, cwd="/tmp", stdin=b"\xff\x00"
        )
        assert result.exit_code == 4
        assert result.stdout == b"\xff\x00/tmp\n" and result.stderr == b"y\n"
        timed = await vm.exec(["sleep", "30"], timeout=0.5)
        assert timed.timed_out and timed.signal == 9
        with pytest.raises(firepit.ExecRefused):
            await vm.exec(["/no/such/program"])
