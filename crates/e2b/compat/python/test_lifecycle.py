"""Sandboxes through E2B's SDK: create with metadata, get, list with filters, timeouts, connect,
kill, templates, metrics. Pause and resume are ``test_pause.py``, snapshots and forks
``test_snapshots.py``."""

from __future__ import annotations

import datetime
import time

import pytest

from e2b import NotFoundException, Sandbox, SandboxException, SandboxQuery


def test_create_describe_list_time_and_kill(daemon: object) -> None:
    sbx = Sandbox.create(metadata={"suite": "e2b-compat", "case": "lifecycle"}, timeout=60)
    try:
        info = sbx.get_info()
        assert info.sandbox_id == sbx.sandbox_id
        assert info.template_id == "base"
        assert info.metadata == {"suite": "e2b-compat", "case": "lifecycle"}
        assert info.cpu_count >= 1 and info.memory_mb > 0
        assert datetime.timedelta(seconds=50) < info.end_at - info.started_at <= datetime.timedelta(seconds=61)
        listed = Sandbox.list(query=SandboxQuery(metadata={"case": "lifecycle"})).next_items()
        assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
        assert Sandbox.list(query=SandboxQuery(metadata={"case": "none"})).next_items() == []
        sbx.set_timeout(300)
        assert sbx.get_info().end_at - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(seconds=250)
        same = Sandbox.connect(sbx.sandbox_id)
        assert same.commands.run("echo again").stdout == "again\n"
        assert sbx.is_running()
    finally:
        assert sbx.kill()
    assert not sbx.is_running()
    assert Sandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sbx.sandbox_id)


def test_an_unknown_template_is_refused(daemon: object) -> None:
    with pytest.raises(SandboxException) as raised:
        Sandbox.create("no-such-template")
    assert "not found" in str(raised.value)


def test_metrics_are_firepits_usage_samples(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + 30
    while not (metrics := sandbox.get_metrics()):
        assert time.monotonic() < deadline, "no metrics within 30 s"
        time.sleep(0.5)
    last = metrics[-1]
    assert last.cpu_count >= 1 and 0 <= last.cpu_used_pct <= 100 * last.cpu_count
    assert 0 < last.mem_used <= last.mem_total and 0 <= last.disk_used <= last.disk_total
    assert last.timestamp.tzinfo is not None
    later = sandbox.get_metrics(start=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    assert later == []
