"""A 100 MiB file through the SDK both ways, from and to local paths, in a real VM: the bytes
arrive whole (equal SHA-256 on the host, in the guest and back), and the SDK streams them (the
test process's peak memory grows far less than the file's size); sync and async."""

from __future__ import annotations

import hashlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Daemon

import firepit

SIZE = 100 * 1024 * 1024
PIECE = 1024 * 1024


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_file(path: Path, size: int) -> str:
    """Writes ``size`` random bytes to ``path`` piece by piece; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // PIECE):
            piece = os.urandom(PIECE)
            digest.update(piece)
            file.write(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "big.bin"
    try:
        yield path, random_file(path, SIZE)
    finally:
        for leftover in tmp_path.glob("*.bin"):
            leftover.unlink()


def guest_sha256(vm: firepit.Lease, path: str) -> str:
    result = vm.exec(["sha256sum", path], timeout=120)
    assert result.ok, result.stderr_text
    return result.stdout_text.split()[0]


def test_100_mib_round_trip_keeps_every_byte_and_streams(daemon: Daemon, big_file: tuple[Path, str]) -> None:
    local, sha256 = big_file
    peak_before = peak_rss_mib()
    with firepit.Client(daemon.socket) as client, client.lease("default", wait=60) as vm:
        assert vm.upload_file(local, "/tmp/big.bin") == SIZE
        assert vm.stat("/tmp/big.bin").size == SIZE
        assert guest_sha256(vm, "/tmp/big.bin") == sha256
        back = local.with_name("back.bin")
        assert vm.download_file("/tmp/big.bin", back) == SIZE
        assert file_sha256(back) == sha256
        # A file object is streamed too, and so is a read iterated piece by piece (the guest's
        # root is in its memory: one copy at a time).
        vm.remove("/tmp/big.bin")
        with local.open("rb") as source:
            assert vm.write_file("/tmp/again.bin", source) == SIZE
        digest = hashlib.sha256()
        with vm.read_file("/tmp/again.bin") as reader:
            assert reader.size == SIZE
            for chunk in reader:
                digest.update(chunk)
        assert digest.hexdigest() == sha256
    # Buffering the file whole once would add 100 MiB to the peak.
    assert peak_rss_mib() - peak_before < 40


@pytest.mark.anyio
async def test_100_mib_round_trip_async(daemon: Daemon, big_file: tuple[Path, str]) -> None:
    local, sha256 = big_file
    peak_before = peak_rss_mib()
    async with firepit.AsyncClient(daemon.socket) as client, client.lease("default", wait=60) as vm:
        assert await vm.write_file("/tmp/big.bin", local) == SIZE
        back = local.with_name("back.bin")
        assert await vm.download_file("/tmp/big.bin", back) == SIZE
        assert file_sha256(back) == sha256
    assert peak_rss_mib() - peak_before < 40
