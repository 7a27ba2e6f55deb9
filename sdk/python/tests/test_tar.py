"""Directories as tar streams, without a VM: what `upload_dir` packs is what `tarfile` reads back,
and what `download_dir` unpacks cannot land outside its destination."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from firepit import _tar


def test_a_packed_directory_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "empty").mkdir(parents=True)
    (tree / "sub" / "data.bin").write_bytes(os.urandom(200_003))
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o750)
    (tree / "link").symlink_to("run.sh")
    os.link(tree / "run.sh", tree / "hard.sh")
    chunks = list(_tar.pack(tree))
    assert max(len(c) for c in chunks) <= _tar.CHUNK  # streamed piecewise, not built whole
    out = tmp_path / "out"
    _tar.unpack(_tar.ChunkReader(iter(chunks)), out)
    assert (out / "sub" / "data.bin").read_bytes() == (tree / "sub" / "data.bin").read_bytes()
    assert (out / "sub" / "empty").is_dir() and os.readlink(out / "link") == "run.sh"
    assert (out / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (out / "hard.sh").read_text() == "#!/bin/sh\n"


def archive(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [
        ("../escaped", tarfile.REGTYPE, ""),
        ("out", tarfile.SYMTYPE, "/etc/passwd"),
        ("up", tarfile.SYMTYPE, "../../outside"),
    ],
)
def test_entries_leaving_the_destination_are_refused(
    tmp_path: Path, name: str, kind: bytes, link: str
) -> None:
    destination = tmp_path / "dest"
    with pytest.raises(tarfile.FilterError):
        _tar.unpack(archive(name, kind, link), destination)
    assert not (tmp_path / "escaped").exists()


def test_an_absolute_name_lands_inside_the_destination(tmp_path: Path) -> None:
    _tar.unpack(archive("/abs/inside"), tmp_path / "dest")
    assert (tmp_path / "dest" / "abs" / "inside").is_file() and not Path("/abs/inside").exists()
