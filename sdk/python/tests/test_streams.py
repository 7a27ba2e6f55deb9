"""Streamed commands and background processes in a real VM: output as it is written, exit codes,
timeouts that kill the whole process group, processes that outlive their client, output read by
offset after reconnecting (over TCP) and followed, signals; sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from harness import Daemon

import firepit


@pytest.fixture(scope="module")
def vm(daemon: Daemon) -> Iterator[firepit.Lease]:
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as lease:
        yield lease


def test_exec_stream_yields_output_before_the_command_exits(vm: firepit.Lease) -> None:
    started = time.monotonic()
    events = list_with_times(vm.exec_stream(["sh", "-c", "echo one; sleep 2; echo two >&2; exit 3"]), started)
    assert isinstance(events[0][1], firepit.Started) and events[0][1].pid > 1
    outputs = [(event.channel, event.data) for _, event in events if isinstance(event, firepit.Output)]
    assert outputs == [("stdout", b"one\n"), ("stderr", b"two\n")]
    first_output_at = next(at for at, event in events if isinstance(event, firepit.Output))
    exit_at, last = events[-1]
    assert isinstance(last, firepit.Exit) and last.exit_code == 3 and not last.ok
    assert exit_at - first_output_at >= 1.5


def list_with_times(
    events: Iterator[firepit.StreamEvent], started: float
) -> list[tuple[float, firepit.StreamEvent]]:
    return [(time.monotonic() - started, event) for event in events]


COUNT_SLEEPERS = [
    "sh",
    "-c",
    "n=0; for f in /proc/[0-9]*/cmdline; do "
    "[ \"$(tr '\\0' ' ' < $f 2>/dev/null)\" = 'sleep 303 ' ] && n=$((n+1)); done; echo $n",
]
"""Counts the guest's `sleep 303` processes."""


def count_sleepers(vm: firepit.Lease) -> int:
    return int(vm.exec(COUNT_SLEEPERS).stdout_text)


async def count_sleepers_async(vm: firepit.AsyncLease) -> int:
    return int((await vm.exec(COUNT_SLEEPERS)).stdout_text)


def test_a_timeout_kills_the_whole_process_group_and_leaving_early_kills_the_command(
    vm: firepit.Lease,
) -> None:
    events = list(vm.exec_stream(["sh", "-c", "sleep 303 & sleep 303; wait"], timeout=1))
    last = events[-1]
    assert isinstance(last, firepit.Exit) and last.status.timed_out and last.status.signal == 9
    assert count_sleepers(vm) == 0
    for leave in ("close", "drop"):
        stream = vm.exec_stream(["sh", "-c", "sleep 303 & echo up; wait"], stdin=b"ignored")
        for event in stream:
            if isinstance(event, firepit.Output):
                break
        assert count_sleepers(vm) == 1
        if leave == "close":
            stream.close()
        else:
            del stream  # an abandoned stream ends its exchange too
        deadline = time.monotonic() + 10
        while count_sleepers(vm) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_sleepers(vm) == 0, leave
    with pytest.raises(firepit.ExecRefused):
        vm.exec_stream(["/no/such/program"])


def test_a_background_process_is_read_from_an_offset_after_reconnecting_and_ended_by_term(
    daemon: Daemon, vm: firepit.Lease
) -> None:
    script = 'echo "$A $(pwd)"; i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done'
    with firepit.Client(daemon.socket) as first:
        # One client starts it, reads its first line and goes away (the lease is addressed by its
        # info, as a client that restarted would).
        mine = firepit.Lease(first, vm.info)
        started = mine.start_process(["sh", "-c", script], tag="ticker", env={"A": "1"}, cwd="/tmp")
        assert started.running and started.tag == "ticker" and started.argv[0] == "sh"
        head = mine.process_output("ticker", max_bytes=7, wait=5)
        assert (head.data, head.offset, head.next_offset, head.missed) == (b"1 /tmp\n", 0, 7, 0)
    time.sleep(0.5)
    # Another client, over other connections (TCP here), reads on from where the first stopped.
    with firepit.Client(url=daemon.url, token=daemon.token) as second:
        again = firepit.Lease(second, vm.info)
        listed = {p.tag: p for p in again.processes()}
        assert listed["ticker"].running and listed["ticker"].stdout_bytes > 14
        assert again.process_output(started.id, offset=head.next_offset, max_bytes=7).data == b"line 0\n"
        with again.follow_output("ticker", offset=14) as follower:
            first_chunk = next(follower)
            assert isinstance(first_chunk, firepit.Output) and first_chunk.offset == 14
            assert first_chunk.data.startswith(b"line 1\n")
            again.signal_process("ticker", "TERM")
            rest = list(follower)
    assert isinstance(rest[-2], firepit.Eof) and isinstance(rest[-1], firepit.Exit)
    assert rest[-1].status.signal == 15
    ended = vm.process("ticker", wait=5)
    assert not ended.running and ended.exit is not None and ended.exit.signal == 15
    vm.remove_process("ticker")
    with pytest.raises(firepit.ProcessNotFound):
        vm.process("ticker")
    with pytest.raises(firepit.ExecRefused):
        vm.start_process(["/no/such/program"])
    # `user` runs it as that user (a uid needs no entry in the guest's passwd).
    uid = 'while read -r k v rest; do [ "$k" = Uid: ] && echo "$v"; done < /proc/self/status; exit 0'
    as_nobody = vm.start_process(["sh", "-c", uid], user="65534")
    assert vm.process(as_nobody.id, wait=10).exit is not None
    assert vm.process_output(as_nobody.id).data == b"65534\n"


@pytest.mark.anyio
async def test_streams_and_processes_async(aclient: firepit.AsyncClient) -> None:
    async with aclient.lease("default", wait=60) as vm:
        events = [e async for e in vm.exec_stream(["sh", "-c", "cat; echo err >&2"], stdin=b"in\n")]
        outputs = [(e.channel, e.data) for e in events if isinstance(e, firepit.Output)]
        assert sorted(outputs) == [("stderr", b"err\n"), ("stdout", b"in\n")]
        assert isinstance(events[-1], firepit.Exit) and events[-1].ok
        info = await vm.start_process(["sh", "-c", "echo hello; echo oops >&2; sleep 30"], tag="bg")
        with pytest.raises(firepit.AlreadyExists):
            await vm.start_process(["true"], tag="bg")  # a running process has that tag
        out = await vm.process_output(info.id, wait=5)
        assert out.data == b"hello\n"
        err = await vm.process_output("bg", channel="stderr", wait=5)
        assert err.data == b"oops\n"
        assert [p.tag for p in await vm.processes()] == ["bg"]
        await vm.signal_process("bg", 9)
        assert (await vm.process("bg", wait=5)).exit is not None
        followed = [e async for e in vm.follow_output("bg")]
        assert isinstance(followed[0], firepit.Output) and followed[0].data == b"hello\n"
        assert isinstance(followed[-1], firepit.Exit) and followed[-1].status.signal == 9
        await vm.remove_process("bg")
        assert await vm.processes() == []
        # Leaving an `async with` block early ends the command; a refused one raises on entering.
        async with vm.exec_stream(["sh", "-c", "sleep 303 & echo up; wait"]) as stream:
            async for event in stream:
                if isinstance(event, firepit.Output):
                    break
            assert await count_sleepers_async(vm) == 1
        deadline = time.monotonic() + 10
        while await count_sleepers_async(vm) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await count_sleepers_async(vm) == 0
        with pytest.raises(firepit.ExecRefused):
            async with vm.exec_stream(["/no/such/program"]):
                pass


def test_releasing_the_lease_ends_its_streams_and_terminals_with_lease_ended(daemon: Daemon) -> None:
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as doomed:
        stream = doomed.exec_stream(["sleep", "100"])
        assert isinstance(next(stream), firepit.Started)
        with doomed.pty(["sleep", "100"]) as term:
            doomed.start_process(["sleep", "100"], tag="bg")
            doomed.release()
            with pytest.raises(firepit.LeaseEnded):
                next(stream)
            with pytest.raises(firepit.LeaseEnded):
                term.read(timeout=30)
            with pytest.raises(firepit.LeaseEnded):
                term.wait(timeout=5)  # no exit status to give: why not
        with pytest.raises(firepit.LeaseNotFound):
            doomed.process("bg")
