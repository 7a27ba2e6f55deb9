"""Snapshot templates and forks through E2B's SDK, on firepit's snapshots and forks: a snapshot of
a sandbox is a template (by its id or the name given) that new sandboxes start from with its
files; it is listed, found by sandbox and by name, and deleted; a fork is a running copy that
then goes its own way. What firepit does not do (a filesystem-only snapshot, more forks than
firepit makes at once, deleting a template that is a shape) is refused in E2B's error shape."""

from __future__ import annotations

import pytest

from e2b import Sandbox, SandboxException

def test_a_snapshot_is_a_template_that_new_sandboxes_start_from(daemon: object) -> None:
    sbx = Sandbox.create(timeout=120)
    started: list[Sandbox] = []
    try:
        sbx.files.write("/home/user/state.txt", "before the snapshot")
        snapshot = sbx.create_snapshot(name="compat-snap")
        assert snapshot.names == ["compat-snap"]
        sbx.files.write("/home/user/state.txt", "after the snapshot")
        listed = Sandbox.list_snapshots(sandbox_id=sbx.sandbox_id).next_items()
        assert [s.snapshot_id for s in listed] == [snapshot.snapshot_id]
        assert [s.snapshot_id for s in Sandbox.list_snapshots(name="compat-snap").next_items()] == [
            snapshot.snapshot_id
        ]
        for template in (snapshot.snapshot_id, "compat-snap"):
            copy = Sandbox.create(template, timeout=60)
            started.append(copy)
            assert copy.files.read("/home/user/state.txt") == "before the snapshot"
            assert copy.commands.run("whoami").stdout.strip() == "user"
        assert sbx.files.read("/home/user/state.txt") == "after the snapshot"
        assert Sandbox.delete_snapshot(snapshot.snapshot_id) is True
        assert Sandbox.delete_snapshot(snapshot.snapshot_id) is False
        assert Sandbox.list_snapshots(sandbox_id=sbx.sandbox_id).next_items() == []
        for gone in ("compat-snap", snapshot.snapshot_id, "s-00000000000000ff"):
            with pytest.raises(SandboxException) as raised:
                Sandbox.create(gone, timeout=60)
            assert "404" in str(raised.value) and "not found" in str(raised.value)
    finally:
        for copy in started:
            copy.kill()
        sbx.kill()


def test_forks_are_running_copies_that_go_their_own_way() -> None:
    sbx = Sandbox.create(timeout=120)
    forks: list[Sandbox] = []
    try:
        sbx.files.write("/home/user/origin.txt", "from the source")
        results = sbx.fork(count=2, timeout=60)
        forks = [fork for fork in results if isinstance(fork, Sandbox)]
        assert len(forks) == 2, results
        assert len({sbx.sandbox_id, *(fork.sandbox_id for fork in forks)}) == 3
        for index, fork in enumerate(forks):
            assert fork.files.read("/home/user/origin.txt") == "from the source"
            fork.files.write("/home/user/origin.txt", f"fork {index}")
        assert [fork.files.read("/home/user/origin.txt") for fork in forks] == ["fork 0", "fork 1"]
        assert sbx.files.read("/home/user/origin.txt") == "from the source"
        assert all(fork.get_info().template_id == "base" for fork in forks)
    finally:
        for fork in forks:
            fork.kill()
        sbx.kill()


def test_what_firepit_does_not_do_is_refused_in_e2b_shape(daemon: object, sandbox: Sandbox) -> None:
    with daemon.rest() as http:  # type: ignore[attr-defined]
        disk_only = http.post(f"/sandboxes/{sandbox.sandbox_id}/snapshots", json={"memory": False})
        assert disk_only.status_code == 400 and "memory" in disk_only.json()["message"], disk_only.text
        shape_name = http.post(f"/sandboxes/{sandbox.sandbox_id}/snapshots", json={"name": "base"})
        assert shape_name.status_code == 409, shape_name.text
        too_many = http.post(f"/sandboxes/{sandbox.sandbox_id}/fork", json={"count": 17})
        assert too_many.status_code == 400 and "16" in too_many.json()["message"], too_many.text
        shape = http.delete("/templates/base")
        assert shape.status_code == 400 and "shape" in shape.json()["message"], shape.text
        unknown = http.post("/sandboxes/l-nope/fork", json={"count": 1})
        assert unknown.status_code == 404 and unknown.json()["code"] == 404
    assert Sandbox.delete_snapshot("s-00000000000000ff") is False
    with pytest.raises(SandboxException):
        Sandbox.fork("l-nope", count=1)
