"""Files in a real VM: streamed writes and reads, local files and directories in and out (tar
streams), metadata and directory operations, and typed errors; sync (one lease shared by the
module) and async."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Daemon

import firepit


@pytest.fixture(scope="module")
def vm(daemon: Daemon) -> Iterator[firepit.Lease]:
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as lease:
        yield lease


def test_writes_stream_from_bytes_files_and_generators_and_read_back(vm: firepit.Lease) -> None:
    payload = os.urandom(300_000)
    assert vm.write_file("/tmp/a.bin", payload) == len(payload)
    assert vm.read_bytes("/tmp/a.bin") == payload
    assert vm.write_file("/tmp/b.bin", io.BytesIO(payload), mode=0o600) == len(payload)
    pieces = (bytes([i]) * 70_000 for i in range(5))
    assert vm.write_file("/tmp/c.bin", pieces) == 350_000
    vm.write_file("/tmp/c.bin", "tail\n", append=True)
    with vm.read_file("/tmp/c.bin") as reader:
        assert (reader.size, reader.mode, reader.kind) == (350_005, 0o644, "file")
        chunks = list(reader)
    assert b"".join(chunks).endswith(b"\x04" * 10 + b"tail\n") and len(chunks) > 1
    with vm.read_file("/tmp/b.bin", offset=10, limit=5) as reader:
        assert reader.read() == payload[10:15]
    assert vm.stat("/tmp/b.bin").mode == 0o600
    vm.write_file("/tmp/deep/er/t.txt", "grüße", create_parents=True)
    assert vm.read_text("/tmp/deep/er/t.txt") == "grüße"


def test_local_files_and_directories_round_trip(vm: firepit.Lease, tmp_path: Path) -> None:
    local = tmp_path / "run.sh"
    local.write_text("#!/bin/sh\necho ran\n")
    local.chmod(0o750)
    vm.upload_file(local, "/tmp/run.sh")
    assert vm.exec(["/tmp/run.sh"]).stdout_text == "ran\n"
    assert vm.download_file("/tmp/run.sh", tmp_path / "back.sh") == local.stat().st_size
    assert (tmp_path / "back.sh").stat().st_mode & 0o777 == 0o750

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "big.bin").write_bytes(os.urandom(200_000))
    (tree / "top.txt").write_text("top\n")
    (tree / "link").symlink_to("top.txt")
    assert vm.upload_dir(tree, "/root/tree") > 200_000
    assert vm.exec(["cat", "/root/tree/link"]).stdout_text == "top\n"
    out = tmp_path / "out"
    vm.download_dir("/root/tree", out)
    assert (out / "sub" / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()
    assert os.readlink(out / "link") == "top.txt"


def test_metadata_and_directory_operations(vm: firepit.Lease) -> None:
    vm.mkdir("/tmp/ops/a/b")
    vm.write_file("/tmp/ops/a/f", b"x")
    assert [e.name for e in vm.list_dir("/tmp/ops/a")] == ["b", "f"]
    assert vm.list_dir("/tmp/ops/a")[0].stat.is_dir
    vm.chmod("/tmp/ops/a/f", 0o640)
    vm.chown("/tmp/ops/a/f", uid=5, gid=6)
    stat = vm.stat("/tmp/ops/a/f")
    assert (stat.kind, stat.size, stat.mode, stat.uid, stat.gid) == ("file", 1, 0o640, 5, 6)
    vm.rename("/tmp/ops/a/f", "/tmp/ops/g")
    assert vm.exists("/tmp/ops/g") and not vm.exists("/tmp/ops/a/f")
    with pytest.raises(firepit.DirectoryNotEmpty):
        vm.remove("/tmp/ops")
    vm.remove("/tmp/ops", recursive=True)
    assert not vm.exists("/tmp/ops")


def test_guest_failures_are_typed(vm: firepit.Lease) -> None:
    with pytest.raises(firepit.NotFound) as raised:
        vm.read_bytes("/no/such/file")
    assert raised.value.status == 404 and "/no/such/file" in raised.value.message
    with pytest.raises(firepit.IsADirectory):
        vm.read_bytes("/tmp")
    with pytest.raises(firepit.NotADirectory):
        vm.list_dir("/etc/hostname")
    with pytest.raises(firepit.NotFound):
        vm.stat("/no/such")
    with pytest.raises(ValueError, match="absolute"):
        vm.stat("relative/path")
    assert vm.exec(["true"]).ok  # the VM is fine


@pytest.mark.anyio
async def test_files_async(aclient: firepit.AsyncClient, tmp_path: Path) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(3):
            yield bytes([65 + i]) * 100_000

    async with aclient.lease("default", wait=60) as vm:
        assert await vm.write_file("/tmp/x.bin", pieces()) == 300_000
        async with await vm.read_file("/tmp/x.bin") as reader:
            assert reader.size == 300_000
            data = b"".join([chunk async for chunk in reader])
        assert data == b"A" * 100_000 + b"B" * 100_000 + b"C" * 100_000
        assert await vm.read_text("/tmp/x.bin") == data.decode()
        await vm.mkdir("/tmp/adir/sub")
        await vm.chmod("/tmp/adir", 0o700)
        await vm.chown("/tmp/adir", uid=1)
        assert (await vm.stat("/tmp/adir")).mode == 0o700
        await vm.rename("/tmp/x.bin", "/tmp/adir/x.bin")
        assert [e.name for e in await vm.list_dir("/tmp/adir")] == ["sub", "x.bin"]
        out = tmp_path / "out"
        await vm.download_dir("/tmp/adir", out)
        assert (out / "x.bin").read_bytes() == data
        (out / "new.txt").write_text("new\n")
        await vm.upload_dir(out, "/tmp/bdir")
        assert await vm.read_bytes("/tmp/bdir/new.txt") == b"new\n"
        assert await vm.exists("/tmp/bdir/x.bin")
        await vm.remove("/tmp/adir", recursive=True)
        with pytest.raises(firepit.NotFound):
            await vm.stat("/tmp/adir")
