"""What the sandbox endpoints answer: file metadata, background processes, their output, and the
events of streams (a streamed exec, a followed output, a terminal).

Like :mod:`firepit.models`, each class mirrors a body of the daemon's API
(``crates/api/src/{files,processes,events}.rs``) with Python types: bytes are :class:`bytes`
(the wire's base64 is decoded here), durations are seconds, times are UTC datetimes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .models import _int, _object, _opt_int, _opt_str, _str

__all__ = [
    "DirEntry",
    "Eof",
    "Exit",
    "ExitStatus",
    "FileStat",
    "Output",
    "ProcessInfo",
    "ProcessOutput",
    "Started",
    "StreamEvent",
]


def decode_data(data: dict[str, Any]) -> bytes:
    """The bytes of a ``{data, encoding}`` pair."""
    text = _str(data, "data")
    encoding = data.get("encoding", "utf8")
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    if encoding == "utf8":
        return text.encode()
    raise ValueError(f"unknown encoding {encoding!r}")


@dataclass(frozen=True)
class FileStat:
    """Metadata of a guest path.

    Attributes:
        kind: ``"file"``, ``"dir"``, ``"symlink"`` (only when not followed) or ``"other"``.
        size: size in bytes.
        mode: permission bits (``0o644``).
        uid: owner.
        gid: group.
        modified: last modification (the guest's clock, UTC).
        symlink_target: where a symbolic link points.
    """

    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    modified: datetime
    symlink_target: str | None = None

    @property
    def is_dir(self) -> bool:
        """True for a directory."""
        return self.kind == "dir"

    @property
    def is_file(self) -> bool:
        """True for a regular file."""
        return self.kind == "file"

    @classmethod
    def from_json(cls, body: Any) -> FileStat:
        """Parses a ``FileStat`` body."""
        data = _object(body, "file stat")
        return cls(
            kind=_str(data, "kind"),
            size=_int(data, "size"),
            mode=_int(data, "mode"),
            uid=_int(data, "uid"),
            gid=_int(data, "gid"),
            modified=datetime.fromtimestamp(_int(data, "modified_unix_ms") / 1000, tz=UTC),
            symlink_target=_opt_str(data, "symlink_target"),
        )


@dataclass(frozen=True)
class DirEntry:
    """One entry of a directory listing: its ``name`` and its ``stat`` (links not followed)."""

    name: str
    stat: FileStat

    @classmethod
    def from_json(cls, body: Any) -> DirEntry:
        """Parses a ``DirEntry``."""
        data = _object(body, "directory entry")
        return cls(name=_str(data, "name"), stat=FileStat.from_json(data.get("stat")))


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended.

    Attributes:
        exit_code: the exit code, or ``None`` when a signal killed it.
        signal: the signal that killed it, if any.
        timed_out: it ran past its timeout and its process group was killed.
        duration: run time in the guest, seconds.
        oom_killed: the guest kernel's OOM killer killed it (or a process it started).
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float
    oom_killed: bool = False

    @property
    def ok(self) -> bool:
        """True when it exited with code 0."""
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, body: Any) -> ExitStatus:
        """Parses an ``ExitStatusView``."""
        data = _object(body, "exit status")
        return cls(
            exit_code=_opt_int(data, "exit_code"),
            signal=_opt_int(data, "signal"),
            timed_out=bool(data.get("timed_out", False)),
            duration=_int(data, "duration_ms") / 1000,
            oom_killed=bool(data.get("oom_killed", False)),
        )


@dataclass(frozen=True)
class ProcessInfo:
    """A background process as the guest knows it.

    Attributes:
        id: its id (never reused within a VM); ``vm.process(id)`` or by its ``tag``.
        tag: the name it was started with.
        pid: its guest process id (and process group id).
        argv: what it runs.
        started_at: when it started (guest clock, UTC).
        exit: how it ended; ``None`` while it runs.
        stdout_bytes: bytes written to stdout so far (the offset after its last byte).
        stderr_bytes: bytes written to stderr so far.
    """

    id: int
    tag: str | None
    pid: int
    argv: tuple[str, ...]
    started_at: datetime
    exit: ExitStatus | None
    stdout_bytes: int
    stderr_bytes: int

    @property
    def running(self) -> bool:
        """True while it runs."""
        return self.exit is None

    @classmethod
    def from_json(cls, body: Any) -> ProcessInfo:
        """Parses a ``ProcessView``."""
        data = _object(body, "process")
        argv = data.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("process: `argv` is not a list of strings")
        exit_ = data.get("exit")
        return cls(
            id=_int(data, "id"),
            tag=_opt_str(data, "tag"),
            pid=_int(data, "pid"),
            argv=tuple(argv),
            started_at=datetime.fromtimestamp(_int(data, "started_unix_ms") / 1000, tz=UTC),
            exit=None if exit_ is None else ExitStatus.from_json(exit_),
            stdout_bytes=_int(data, "stdout_bytes"),
            stderr_bytes=_int(data, "stderr_bytes"),
        )


@dataclass(frozen=True)
class ProcessOutput:
    """A slice of a background process's output.

    Attributes:
        data: the bytes.
        offset: offset of ``data[0]`` (past the requested offset when output was dropped).
        missed: bytes dropped by the guest between the requested offset and ``offset``.
        next_offset: where to read next.
        eof: the output ended and everything up to ``next_offset`` was returned.
    """

    data: bytes
    offset: int
    missed: int
    next_offset: int
    eof: bool

    @classmethod
    def from_json(cls, body: Any) -> ProcessOutput:
        """Parses a ``ProcessOutputView``."""
        data = _object(body, "process output")
        return cls(
            data=decode_data(data),
            offset=_int(data, "offset"),
            missed=_int(data, "missed"),
            next_offset=_int(data, "next_offset"),
            eof=bool(data.get("eof", False)),
        )


@dataclass(frozen=True)
class Started:
    """A streamed command (or a terminal's program) started; ``pid`` is its guest process id."""

    pid: int


@dataclass(frozen=True)
class Output:
    """Bytes a command wrote, as they came.

    Attributes:
        channel: ``"stdout"`` or ``"stderr"``.
        data: the bytes.
        offset: for a followed background output, the offset of ``data[0]``.
        missed: for a followed background output, bytes the guest dropped before ``data``.
    """

    channel: Literal["stdout", "stderr"]
    data: bytes
    offset: int | None = None
    missed: int | None = None

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 (invalid bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Eof:
    """A followed output ended; ``next_offset`` is the offset after its last byte."""

    next_offset: int


@dataclass(frozen=True)
class Exit:
    """The command exited (the last event of a stream): its :class:`ExitStatus`."""

    status: ExitStatus

    @property
    def exit_code(self) -> int | None:
        """The exit code, ``None`` when killed by a signal."""
        return self.status.exit_code

    @property
    def ok(self) -> bool:
        """True when it exited with code 0."""
        return self.status.ok


StreamEvent = Started | Output | Eof | Exit
"""One event of a streamed exec or a followed output."""
