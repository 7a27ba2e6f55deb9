"""Files through E2B's SDK: write and read (text, bytes, streams, several at once, gzip), list,
exists, info, make_dir, remove, rename, a large file, signed URLs, users and bad paths."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid

import httpx
import pytest

from e2b import FileNotFoundException, FileType, InvalidArgumentException, Sandbox
from e2b.sandbox.filesystem.filesystem import WriteEntry


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_text_and_bytes_round_trip_in_the_users_home(sandbox: Sandbox) -> None:
    name = unique("notes.txt")
    info = sandbox.files.write(name, "héllo")
    assert (info.path, info.type) == (f"/home/user/{name}", FileType.FILE)
    assert sandbox.files.read(name) == "héllo"
    sandbox.files.write(name, io.BytesIO(b"\x00\xffbytes"))
    assert sandbox.files.read(name, format="bytes") == bytearray(b"\x00\xffbytes")
    assert b"".join(sandbox.files.read(name, format="stream")) == b"\x00\xffbytes"


def test_new_files_and_parents_belong_to_the_user(sandbox: Sandbox) -> None:
    directory = unique("deep")
    sandbox.files.write(f"{directory}/a/b.txt", "x")
    for path in (directory, f"{directory}/a", f"{directory}/a/b.txt"):
        info = sandbox.files.get_info(path)
        assert (info.owner, info.group) == ("user", "user"), path
    root_file = sandbox.files.write(f"/tmp/{unique('root')}", "r", user="root")
    assert sandbox.files.get_info(root_file.path).owner == "root"


def test_info_describes_files_directories_and_links(sandbox: Sandbox) -> None:
    directory = unique("info")
    assert sandbox.files.make_dir(directory)
    assert not sandbox.files.make_dir(directory)
    sandbox.files.write(f"{directory}/f.txt", "four")
    info = sandbox.files.get_info(f"{directory}/f.txt")
    assert (info.name, info.size, info.mode, info.permissions) == ("f.txt", 4, 0o644, "-rw-r--r--")
    assert info.modified_time is not None and info.modified_time.tzinfo is not None
    folder = sandbox.files.get_info(directory)
    assert (folder.type, folder.mode, folder.permissions) == (FileType.DIR, 0o755, "drwxr-xr-x")
    sandbox.commands.run("ln -s f.txt link", cwd=f"/home/user/{directory}")
    link = sandbox.files.get_info(f"{directory}/link")
    assert link.type == FileType.FILE
    assert link.symlink_target == f"/home/user/{directory}/f.txt"


def test_list_exists_rename_and_remove(sandbox: Sandbox) -> None:
    root = unique("tree")
    sandbox.files.write_files(
        [WriteEntry(path=f"{root}/b.txt", data="b"), WriteEntry(path=f"{root}/sub/c.txt", data="c")]
    )
    assert [e.name for e in sandbox.files.list(root)] == ["b.txt", "sub"]
    assert [e.path for e in sandbox.files.list(root, depth=2)] == [
        f"/home/user/{root}/b.txt",
        f"/home/user/{root}/sub",
        f"/home/user/{root}/sub/c.txt",
    ]
    assert sandbox.files.exists(f"{root}/b.txt")
    moved = sandbox.files.rename(f"{root}/b.txt", f"{root}/moved/b2.txt")
    assert moved.path == f"/home/user/{root}/moved/b2.txt"
    assert not sandbox.files.exists(f"{root}/b.txt")
    sandbox.files.remove(root)
    assert not sandbox.files.exists(root)


def test_missing_paths_raise_file_not_found(sandbox: Sandbox) -> None:
    with pytest.raises(FileNotFoundException):
        sandbox.files.read("no-such-file.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info("no-such-dir")


def test_octet_stream_and_gzip_uploads(sandbox: Sandbox) -> None:
    text = "streamed and compressed. " * 5000
    name = unique("gz.txt")
    sandbox.files.write(name, io.BytesIO(text.encode()), use_octet_stream=True, gzip=True)
    assert sandbox.files.read(name, gzip=True) == text


def test_a_large_file_arrives_intact(sandbox: Sandbox) -> None:
    data = os.urandom(24 * 1024 * 1024)
    name = unique("large.bin")
    sandbox.files.write(name, io.BytesIO(data))
    back = bytes(sandbox.files.read(name, format="bytes"))
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
    sandbox.files.remove(name)


def test_signed_urls_work_and_expire_and_do_not_cover_other_paths(sandbox: Sandbox) -> None:
    name = f"/home/user/{unique('signed.txt')}"
    upload = sandbox.upload_url(name, use_signature_expiration=60)
    assert httpx.post(upload, files={"file": ("x", b"via url")}).status_code == 200
    download = sandbox.download_url(name, use_signature_expiration=60)
    assert httpx.get(download).content == b"via url"
    forged = download.replace("signed", "other")
    assert httpx.get(forged).status_code == 401
    expired = sandbox.download_url(name, use_signature_expiration=-5)
    assert httpx.get(expired).status_code == 401


def test_dot_dot_resolves_inside_the_guest_and_permissions_hold(sandbox: Sandbox) -> None:
    assert "root:" in sandbox.files.read("../../etc/passwd")
    with pytest.raises(Exception) as raised:
        sandbox.files.read("/etc/shadow")
    assert "may not read" in str(raised.value)
    assert sandbox.files.read("/etc/shadow", user="root")


def test_watching_a_directory_reports_creates_writes_renames_and_removes(sandbox: Sandbox) -> None:
    directory = unique("watched")
    sandbox.files.make_dir(f"{directory}/sub")
    handle = sandbox.files.watch_dir(directory, recursive=True)
    try:
        sandbox.files.write(f"{directory}/new.txt", "x")
        sandbox.files.write(f"{directory}/sub/deep.txt", "y")
        sandbox.files.rename(f"{directory}/new.txt", f"{directory}/renamed.txt")
        sandbox.files.remove(f"{directory}/renamed.txt")
        seen: list[tuple[str, str]] = []
        for _ in range(50):
            seen += [(e.name, e.type.value) for e in handle.get_new_events()]
            if ("renamed.txt", "remove") in seen:
                break
            time.sleep(0.1)
    finally:
        handle.stop()
    assert ("new.txt", "create") in seen
    assert ("new.txt", "write") in seen
    assert ("sub/deep.txt", "create") in seen
    assert ("new.txt", "rename") in seen
    assert ("renamed.txt", "remove") in seen
    with pytest.raises(FileNotFoundException):
        sandbox.files.watch_dir("no-such-dir")


def test_a_relative_path_with_a_nul_byte_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises((InvalidArgumentException, Exception)):
        sandbox.files.get_info("bad\0name")
