"""Pause, resume and connect through E2B's SDK, on firepit's lease pause: a paused sandbox keeps
its files and its background commands (their output read on from where it was), shows as paused,
answers envd as E2B's proxy does for a paused sandbox, and runs again on connect; a timeout pauses a sandbox created with
``on_timeout="pause"``; ``auto_resume`` resumes it on the next envd call. Pausing or resuming
twice is fine."""

from __future__ import annotations

import time

from e2b import Sandbox, SandboxQuery, SandboxState

COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"


def wait_for_state(sandbox_id: str, state: SandboxState, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while (now := Sandbox.get_info(sandbox_id).state) != state:
        assert time.monotonic() < deadline, f"still {now} after {within} s, expected {state}"
        time.sleep(0.5)


def test_a_paused_sandbox_keeps_its_files_and_processes_and_runs_again_on_connect(daemon: object) -> None:
    sbx = Sandbox.create(timeout=300, metadata={"case": "pause"})
    try:
        sbx.files.write("/home/user/kept.txt", "kept across the pause")
        assert sbx.pause() is True
        # Pausing a paused sandbox is not a failure (openai-agents-js#1202 killed it on False).
        assert sbx.pause() is True
        assert not sbx.is_running()
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
        paused = Sandbox.list(query=SandboxQuery(metadata={"case": "pause"}, state=[SandboxState.PAUSED]))
        assert [s.sandbox_id for s in paused.next_items()] == [sbx.sandbox_id]
        running = Sandbox.list(query=SandboxQuery(metadata={"case": "pause"}, state=[SandboxState.RUNNING]))
        assert running.next_items() == []

        same = Sandbox.connect(sbx.sandbox_id, timeout=300)
        again = Sandbox.connect(sbx.sandbox_id, timeout=300)
        assert same.is_running() and again.is_running()
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
        assert same.files.read("/home/user/kept.txt") == "kept across the pause"
        # The deprecated resume verb, on a running sandbox: the sandbox, not a 409.
        with daemon.rest() as http:  # type: ignore[attr-defined]
            for _ in range(2):
                answer = http.post(f"/sandboxes/{sbx.sandbox_id}/resume", json={"timeout": 300})
                assert answer.status_code == 201, answer.text
                assert answer.json()["sandboxID"] == sbx.sandbox_id
    finally:
        assert sbx.kill()
    with daemon.rest() as http:  # type: ignore[attr-defined]
        assert http.post(f"/sandboxes/{sbx.sandbox_id}/pause").status_code == 404


def test_a_background_command_runs_on_after_a_pause(daemon: object) -> None:
    sbx = Sandbox.create(timeout=300)
    try:
        counter = sbx.commands.run(COUNTER, background=True)
        before: list[int] = []
        for stdout, _, _ in counter:
            before += [int(n) for n in (stdout or "").split()]
            if len(before) >= 2:
                break
        assert sbx.pause()
        sbx.connect(timeout=300)
        assert counter.pid in [p.pid for p in sbx.commands.list()], "the background command survived"
        seen: list[int] = []
        deadline = time.monotonic() + 30
        for stdout, _, _ in sbx.commands.connect(counter.pid):
            seen += [int(n) for n in (stdout or "").split()]
            if len(seen) >= 3 or time.monotonic() > deadline:
                break
        # The same process counts on (not a new one from 1), in order.
        assert len(seen) >= 3 and seen == sorted(seen) and seen[0] > before[-1], (before, seen)
        assert sbx.commands.kill(counter.pid)
        deadline = time.monotonic() + 10
        while counter.pid in [p.pid for p in sbx.commands.list()]:
            assert time.monotonic() < deadline, "the killed command is still listed"
            time.sleep(0.2)
    finally:
        sbx.kill()


def test_a_timeout_pauses_a_sandbox_created_so_and_connect_resumes_it(daemon: object) -> None:
    sbx = Sandbox.create(timeout=4, lifecycle={"on_timeout": "pause"})
    try:
        sbx.files.write("/home/user/note.txt", "before the timeout")
        wait_for_state(sbx.sandbox_id, SandboxState.PAUSED)
        assert not sbx.is_running(), "a paused sandbox without auto_resume does not answer envd"
        sbx.connect(timeout=120)
        assert sbx.files.read("/home/user/note.txt") == "before the timeout"
        # A connect keeps the lifecycle chosen at create (E2B#875).
        assert Sandbox.get_info(sbx.sandbox_id).lifecycle == {"on_timeout": "pause", "auto_resume": False}
    finally:
        sbx.kill()


def test_auto_resume_resumes_a_paused_sandbox_on_its_next_call(daemon: object) -> None:
    sbx = Sandbox.create(timeout=120, lifecycle={"on_timeout": "pause", "auto_resume": True})
    try:
        sbx.files.write("/tmp/auto.txt", "resumed by a read")
        assert sbx.pause()
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
        assert sbx.files.read("/tmp/auto.txt") == "resumed by a read"
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
    finally:
        sbx.kill()
