"""The endpoint below the SDK, with raw HTTP: envd's Connect services in the binary protobuf codec
(the SDKs use JSON), bad envelopes, wrong tokens, unknown sandboxes, oversized headers, and the
REST API's key and error shape."""

from __future__ import annotations

import json
import struct
import time

import httpx
import pytest

from e2b import Sandbox
from e2b.envd.filesystem import filesystem_pb
from e2b.envd.process import process_pb
from protobuf import Oneof


def envd(sandbox: Sandbox, daemon: object, **headers: str) -> httpx.Client:
    base = {"E2b-Sandbox-Id": sandbox.sandbox_id, "X-Access-Token": sandbox._envd_access_token or ""}
    return httpx.Client(base_url=daemon.e2b_url, headers={**base, **headers}, timeout=30)  # type: ignore[attr-defined]


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def test_unary_calls_in_binary_protobuf(sandbox: Sandbox, daemon: object) -> None:
    request = filesystem_pb.StatRequest(path="/etc/hostname").to_binary()
    with envd(sandbox, daemon) as http:
        answer = http.post("/filesystem.Filesystem/Stat", content=request, headers={"Content-Type": "application/proto"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/proto"
    entry = filesystem_pb.StatResponse.from_binary(answer.content).entry
    assert entry is not None and entry.name == "hostname" and entry.owner == "root"


def test_a_server_stream_in_binary_protobuf(sandbox: Sandbox, daemon: object) -> None:
    start = process_pb.StartRequest(
        process=process_pb.ProcessConfig(cmd="/bin/sh", args=["-c", "echo proto; exit 4"]), stdin=False
    )
    with envd(sandbox, daemon) as http:
        answer = http.post(
            "/process.Process/Start",
            content=envelope(start.to_binary()),
            headers={"Content-Type": "application/connect+proto"},
        )
    frames = envelopes(answer.content)
    assert frames[-1][0] == 2 and frames[-1][1] == b"{}"
    events = [process_pb.StartResponse.from_binary(payload).event for flags, payload in frames[:-1]]
    kinds = [e.event.field for e in events if e is not None and e.event is not None]
    assert kinds[0] == "start" and kinds[-1] == "end"
    end = events[-1].event.value  # type: ignore[union-attr]
    assert (end.exit_code, end.status) == (4, "exit status 4")
    output = b"".join(e.event.value.output.value for e in events if e.event.field == "data")  # type: ignore[union-attr]
    assert output == b"proto\n"


def test_malformed_envelopes_and_messages_get_connect_errors(sandbox: Sandbox, daemon: object) -> None:
    with envd(sandbox, daemon) as http:
        short = http.post(
            "/process.Process/Connect", content=b"\x00\x00", headers={"Content-Type": "application/connect+json"}
        )
        huge = http.post(
            "/process.Process/Connect",
            content=b"\x00\xff\xff\xff\xff",
            headers={"Content-Type": "application/connect+json"},
        )
        garbage = http.post("/filesystem.Filesystem/Stat", content=b"{nope", headers={"Content-Type": "application/json"})
        wrong_type = http.post("/filesystem.Filesystem/Stat", content=b"{}", headers={"Content-Type": "text/plain"})
        unknown = http.post("/filesystem.Filesystem/Format", content=b"{}", headers={"Content-Type": "application/json"})
    assert short.status_code == 200 and b'"invalid_argument"' in envelopes(short.content)[-1][1]
    assert b'"resource_exhausted"' in envelopes(huge.content)[-1][1]
    assert garbage.status_code == 400 and garbage.json()["code"] == "invalid_argument"
    assert wrong_type.status_code == 415
    assert unknown.status_code == 501 and unknown.json()["code"] == "unimplemented"


def test_a_wrong_token_or_unknown_sandbox_is_refused(sandbox: Sandbox, daemon: object) -> None:
    with envd(sandbox, daemon, **{"X-Access-Token": "wrong"}) as http:
        answer = http.post("/filesystem.Filesystem/Stat", content=b"{}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
    with httpx.Client(base_url=daemon.e2b_url, headers={"E2b-Sandbox-Id": "l-0000000000000000"}) as http:  # type: ignore[attr-defined]
        gone = http.get("/health")
    assert gone.status_code == 502 and "was not found" in gone.json()["message"]


def test_a_huge_header_is_refused_without_harm(sandbox: Sandbox, daemon: object) -> None:
    with envd(sandbox, daemon, **{"X-Padding": "x" * 200_000}) as http:
        answer = http.get("/health")
    assert answer.status_code in (400, 431)
    with envd(sandbox, daemon) as http:
        assert http.get("/health").status_code == 204


def test_the_rest_api_wants_the_key_and_answers_e2b_errors(daemon: object) -> None:
    url = daemon.e2b_url  # type: ignore[attr-defined]
    assert httpx.get(f"{url}/sandboxes").status_code == 401
    assert httpx.get(f"{url}/sandboxes", headers={"X-API-Key": "wrong-key-wrong-key"}).status_code == 401
    key = {"X-API-Key": daemon.token}  # type: ignore[attr-defined]
    missing = httpx.get(f"{url}/sandboxes/l-0000000000000000", headers=key)
    assert missing.status_code == 404 and missing.json()["code"] == 404
    bad = httpx.post(f"{url}/sandboxes", headers=key, json={"templateID": "base", "volumeMounts": [{"name": "v", "path": "/v"}]})
    assert bad.status_code == 400 and "volume" in bad.json()["message"]
    templates = httpx.get(f"{url}/templates", headers=key).json()
    assert [t["templateID"] for t in templates] == ["base"]


@pytest.mark.parametrize("host", ["49983-{id}.e2b.local", "49983-{id}.e2b.local:80"])
def test_sandboxes_are_reached_by_host_name(sandbox: Sandbox, daemon: object, host: str) -> None:
    with httpx.Client(base_url=daemon.e2b_url) as http:  # type: ignore[attr-defined]
        answer = http.get("/health", headers={"Host": host.format(id=sandbox.sandbox_id)})
    assert answer.status_code == 204


def test_a_watch_dir_stream_starts_then_reports_events(sandbox: Sandbox, daemon: object) -> None:
    directory = f"/home/user/streamed-watch-{time.monotonic_ns()}"
    sandbox.files.make_dir(directory)
    request = json.dumps({"path": directory}).encode()
    with envd(sandbox, daemon) as http:
        with http.stream(
            "POST",
            "/filesystem.Filesystem/WatchDir",
            content=envelope(request),
            headers={"Content-Type": "application/connect+json"},
        ) as answer:
            body = b""
            chunks = answer.iter_bytes()
            while b'"start"' not in body:
                body += next(chunks)
            sandbox.files.write(f"{directory}/seen.txt", "x")
            while b"seen.txt" not in body:
                body += next(chunks)
    events = [json.loads(payload) for flags, payload in envelopes(body[: _complete(body)]) if flags == 0]
    assert events[0] == {"start": {}}
    assert {"filesystem": {"name": "seen.txt", "type": "EVENT_TYPE_CREATE"}} in events


def _complete(body: bytes) -> int:
    """The length of the whole envelopes at the start of ``body``."""
    end = 0
    while len(body) - end >= 5:
        length = struct.unpack(">I", body[end + 1 : end + 5])[0]
        if len(body) - end < 5 + length:
            break
        end += 5 + length
    return end
