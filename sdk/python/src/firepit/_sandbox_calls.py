"""The sandbox endpoints as data, shared by the sync and async leases: JSON calls (built as
:class:`firepit._calls.Call`), the paths of streamed ones, NDJSON event parsing, and the
conversion of what callers pass (modes, signals, byte sources) into what the API takes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import IO, Any, Literal
from urllib.parse import quote, urlencode

import httpx

from ._calls import Call, Seconds, _segment, to_ms
from .errors import FirepitError, error_from_code
from .sandbox_models import (
    DirEntry,
    Eof,
    Exit,
    ExitStatus,
    FileStat,
    Output,
    ProcessInfo,
    ProcessOutput,
    Started,
    StreamEvent,
    decode_data,
)
from .usage_models import LeaseMetrics

CHUNK = 64 * 1024
"""Bytes per piece when streaming a local file."""

Channel = Literal["stdout", "stderr"]
ProcessRef = int | str
"""A background process: its id, or its tag."""

Data = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | Iterable[bytes]
"""What ``write_file`` takes: bytes, text (sent as UTF-8), a local file's path (a
:class:`pathlib.Path`; a ``str`` is text), a binary file object, or an iterable of byte chunks.
Paths, file objects and iterables are streamed piece by piece, never read whole."""

AsyncData = Data | AsyncIterable[bytes]


def lease_path(lease_id: str, rest: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()) -> str:
    """``/v1/leases/{id}/{rest}?{params}`` (``None`` values left out, booleans as true/false)."""
    items = params.items() if isinstance(params, Mapping) else params
    pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in items if v is not None]
    query = f"?{urlencode(pairs)}" if pairs else ""
    return f"/v1/leases/{_segment(lease_id)}/{rest}{query}"


def process_segment(process: ProcessRef) -> str:
    """A process id or tag as a path segment."""
    if isinstance(process, bool) or not isinstance(process, (int, str)):
        raise TypeError(f"a process is its id (int) or its tag (str), not {process!r}")
    return quote(str(process), safe="")


def guest_path(path: str | PurePath) -> str:
    """An absolute guest path as a string."""
    text = os.fspath(path)
    if not text.startswith("/"):
        raise ValueError(f"guest paths are absolute: {text!r}")
    return text


def octal(mode: int | None) -> str | None:
    """A mode as the octal digits the file endpoints take in their query."""
    return None if mode is None else format(mode, "o")


def signal_value(signal: int | str) -> int | str:
    """A signal as the API takes it: a number, or a name such as ``"TERM"``."""
    if isinstance(signal, bool) or not isinstance(signal, (int, str)):
        raise TypeError(f"a signal is a number or a name such as 'TERM', not {signal!r}")
    return signal


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _nothing(_response: httpx.Response) -> None:
    return None


def stat(lease_id: str, path: str | PurePath, follow_symlinks: bool) -> Call[FileStat]:
    """``GET /v1/leases/{id}/files/stat``."""
    params = {"path": guest_path(path), "follow_symlinks": follow_symlinks}
    return Call("GET", lease_path(lease_id, "files/stat", params), lambda r: FileStat.from_json(_json(r)))


def list_dir(lease_id: str, path: str | PurePath) -> Call[list[DirEntry]]:
    """``GET /v1/leases/{id}/files/list``."""

    def parse(response: httpx.Response) -> list[DirEntry]:
        body = _json(response)
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise ValueError("listing: `entries` is not a list")
        return [DirEntry.from_json(e) for e in entries]

    return Call("GET", lease_path(lease_id, "files/list", {"path": guest_path(path)}), parse)


def mkdir(lease_id: str, path: str | PurePath, parents: bool, mode: int | None) -> Call[None]:
    """``POST /v1/leases/{id}/files/mkdir``."""
    body: dict[str, Any] = {"path": guest_path(path), "parents": parents}
    if mode is not None:
        body["mode"] = mode
    return Call("POST", lease_path(lease_id, "files/mkdir"), _nothing, body)


def remove(lease_id: str, path: str | PurePath, recursive: bool) -> Call[None]:
    """``DELETE /v1/leases/{id}/files``."""
    params = {"path": guest_path(path), "recursive": recursive}
    return Call("DELETE", lease_path(lease_id, "files", params), _nothing)


def chmod(lease_id: str, path: str | PurePath, mode: int) -> Call[None]:
    """``POST /v1/leases/{id}/files/chmod``."""
    body = {"path": guest_path(path), "mode": mode}
    return Call("POST", lease_path(lease_id, "files/chmod"), _nothing, body)


def chown(lease_id: str, path: str | PurePath, uid: int | None, gid: int | None) -> Call[None]:
    """``POST /v1/leases/{id}/files/chown``."""
    body = {"path": guest_path(path), "uid": uid, "gid": gid}
    return Call("POST", lease_path(lease_id, "files/chown"), _nothing, body)


def rename(lease_id: str, source: str | PurePath, destination: str | PurePath) -> Call[None]:
    """``POST /v1/leases/{id}/files/rename``."""
    body = {"from": guest_path(source), "to": guest_path(destination)}
    return Call("POST", lease_path(lease_id, "files/rename"), _nothing, body)


def transferred(response: httpx.Response) -> int:
    """The byte count of an upload's answer."""
    body = _json(response)
    if not isinstance(body, dict) or not isinstance(body.get("bytes"), int):
        raise ValueError("upload: no `bytes` in the answer")
    count: int = body["bytes"]
    return count


def write_path(
    lease_id: str, path: str | PurePath, mode: int | None, create_parents: bool, append: bool
) -> str:
    """The path of ``PUT /v1/leases/{id}/files``."""
    params = {
        "path": guest_path(path),
        "mode": octal(mode),
        "create_parents": create_parents or None,
        "append": append or None,
    }
    return lease_path(lease_id, "files", params)


def read_path(lease_id: str, path: str | PurePath, offset: int, limit: int | None) -> str:
    """The path of ``GET /v1/leases/{id}/files``."""
    params = {"path": guest_path(path), "offset": offset or None, "limit": limit}
    return lease_path(lease_id, "files", params)


def archive_path(lease_id: str, path: str | PurePath) -> str:
    """The path of ``PUT``/``GET /v1/leases/{id}/archive``."""
    return lease_path(lease_id, "archive", {"path": guest_path(path)})


def _file_chunks(path: os.PathLike[str]) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


def chunks(data: Data) -> bytes | Iterator[bytes]:
    """A request body for ``data``: bytes as they are, anything else as a stream of chunks."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, os.PathLike):
        return _file_chunks(data)
    if hasattr(data, "read"):
        reader: IO[bytes] = data  # type: ignore[assignment]
        return iter(lambda: reader.read(CHUNK), b"")
    return (bytes(chunk) for chunk in data)


async def achunks(data: AsyncData) -> AsyncIterator[bytes]:
    """``data`` as an async stream of chunks (for the async client); local files are read in a
    worker thread, so a slow disk does not stall the event loop."""
    if isinstance(data, AsyncIterable):
        async for chunk in data:
            yield bytes(chunk)
        return
    if isinstance(data, os.PathLike):
        file = await asyncio.to_thread(open, data, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk
        finally:
            file.close()
        return
    if not isinstance(data, (str, bytes, bytearray, memoryview)) and hasattr(data, "read"):
        reader: IO[bytes] = data  # type: ignore[assignment]
        while chunk := await asyncio.to_thread(reader.read, CHUNK):
            yield chunk
        return
    body = chunks(data)
    if isinstance(body, bytes):
        yield body
        return
    for chunk in body:
        yield chunk


def spawn_body(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | PurePath | None,
    stdin: bytes | str | None,
    timeout: Seconds | None,
) -> dict[str, Any]:
    """The body of ``POST /exec/stream``."""
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list of strings, e.g. ['sh', '-c', 'echo hi'], not one string")
    body: dict[str, Any] = {"argv": [str(a) for a in argv]}
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = os.fspath(cwd)
    if isinstance(stdin, str):
        body["stdin"] = stdin
    elif stdin is not None:
        body["stdin"] = base64.b64encode(bytes(stdin)).decode("ascii")
        body["stdin_encoding"] = "base64"
    if timeout is not None:
        body["timeout_ms"] = to_ms(timeout, "timeout")
    return body


def start_process(
    lease_id: str,
    argv: Sequence[str],
    tag: str | None,
    env: Mapping[str, str] | None,
    cwd: str | PurePath | None,
    timeout: Seconds | None,
    output_limit: int | None,
    user: str | None = None,
) -> Call[ProcessInfo]:
    """``POST /v1/leases/{id}/processes``."""
    body = spawn_body(argv, env, cwd, None, timeout)
    if tag is not None:
        body["tag"] = tag
    if user is not None:
        body["user"] = user
    if output_limit is not None:
        body["output_limit_bytes"] = output_limit
    return Call("POST", lease_path(lease_id, "processes"), lambda r: ProcessInfo.from_json(_json(r)), body)


def lease_metrics(lease_id: str, since_unix_ms: int | None) -> Call[LeaseMetrics]:
    """``GET /v1/leases/{id}/metrics?since_unix_ms=``."""
    params = {"since_unix_ms": since_unix_ms}
    return Call("GET", lease_path(lease_id, "metrics", params), lambda r: LeaseMetrics.from_json(_json(r)))


def processes(lease_id: str) -> Call[list[ProcessInfo]]:
    """``GET /v1/leases/{id}/processes``."""

    def parse(response: httpx.Response) -> list[ProcessInfo]:
        body = _json(response)
        items = body.get("processes") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ValueError("processes: `processes` is not a list")
        return [ProcessInfo.from_json(p) for p in items]

    return Call("GET", lease_path(lease_id, "processes"), parse)


def process(lease_id: str, ref: ProcessRef, wait: Seconds | None) -> Call[ProcessInfo]:
    """``GET /v1/leases/{id}/processes/{process}``."""
    wait_ms = to_ms(wait, "wait") if wait is not None else None
    path = lease_path(lease_id, f"processes/{process_segment(ref)}", {"wait_ms": wait_ms})
    return Call("GET", path, lambda r: ProcessInfo.from_json(_json(r)), server_time=(wait_ms or 0) / 1000)


def signal_process(lease_id: str, ref: ProcessRef, signal: int | str) -> Call[None]:
    """``POST /v1/leases/{id}/processes/{process}/signal``."""
    path = lease_path(lease_id, f"processes/{process_segment(ref)}/signal")
    return Call("POST", path, _nothing, {"signal": signal_value(signal)})


def remove_process(lease_id: str, ref: ProcessRef) -> Call[None]:
    """``DELETE /v1/leases/{id}/processes/{process}``."""
    return Call("DELETE", lease_path(lease_id, f"processes/{process_segment(ref)}"), _nothing)


def process_output(
    lease_id: str, ref: ProcessRef, channel: Channel, offset: int, max_bytes: int | None, wait: Seconds | None
) -> Call[ProcessOutput]:
    """``GET /v1/leases/{id}/processes/{process}/output``."""
    wait_ms = to_ms(wait, "wait") if wait is not None else None
    params = {"channel": channel, "offset": offset, "max_bytes": max_bytes, "wait_ms": wait_ms}
    path = lease_path(lease_id, f"processes/{process_segment(ref)}/output", params)
    return Call("GET", path, lambda r: ProcessOutput.from_json(_json(r)), server_time=(wait_ms or 0) / 1000)


def follow_path(lease_id: str, ref: ProcessRef, channel: Channel, offset: int) -> str:
    """The path of a followed output (NDJSON)."""
    params = {"channel": channel, "offset": offset, "follow": True}
    return lease_path(lease_id, f"processes/{process_segment(ref)}/output", params)


def pty_path(
    lease_id: str,
    argv: Sequence[str] | None,
    rows: int,
    cols: int,
    env: Mapping[str, str] | None,
    cwd: str | PurePath | None,
) -> str:
    """The path of the PTY WebSocket (``arg`` and ``env`` repeat)."""
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list of strings, not one string")
    params: list[tuple[str, Any]] = [("rows", rows), ("cols", cols)]
    params += [("arg", a) for a in argv or ()]
    params += [("env", f"{k}={v}") for k, v in (env or {}).items()]
    if cwd is not None:
        params.append(("cwd", os.fspath(cwd)))
    return lease_path(lease_id, "pty", params)


def parse_event(line: str) -> StreamEvent:
    """One NDJSON line as an event; an ``error`` event raises its typed error."""
    try:
        data = json.loads(line)
    except ValueError as error:
        raise FirepitError("unexpected_response", f"a stream line is not JSON: {line[:200]!r}") from error
    if not isinstance(data, dict):
        raise FirepitError("unexpected_response", f"a stream line is not an object: {line[:200]!r}")
    return event_from_json(data)


def event_from_json(data: dict[str, Any]) -> StreamEvent:
    """A decoded ``StreamEvent`` object as an event; an ``error`` event raises its typed error."""
    kind = data.get("type")
    try:
        if kind == "started":
            return Started(pid=int(data["pid"]))
        if kind in ("stdout", "stderr"):
            channel: Channel = "stdout" if kind == "stdout" else "stderr"
            return Output(channel, decode_data(data), data.get("offset"), data.get("missed"))
        if kind == "eof":
            return Eof(next_offset=int(data["next_offset"]))
        if kind == "exit":
            return Exit(ExitStatus.from_json(data))
    except (KeyError, ValueError, TypeError) as error:
        raise FirepitError("unexpected_response", f"a malformed {kind} event: {error}") from error
    if kind == "error":
        raise error_from_code(str(data.get("error", "stream_error")), str(data.get("message", "")))
    raise FirepitError("unexpected_response", f"an unknown stream event: {str(data)[:200]}")
