"""The SDK agrees with the OpenAPI document the real daemon serves: the document is valid, the
SDK maps every error code it lists (and no other), each model reads exactly the fields of its
schema, and each request the SDK builds can set every field of its body's schema.

A field added to the daemon (a shape setting, a lease field, an error code) fails here until
the SDK has it too; a field the SDK reads that the daemon no longer sends fails here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import Daemon
from openapi_spec_validator import validate

import firepit
from firepit import _calls, _sandbox_calls, snapshots
from firepit.errors import _BY_CODE
from firepit.models import ExecResult, Health, LeaseInfo, Pools, PortForward, ShapeStatus
from firepit.sandbox_models import DirEntry, ExitStatus, FileStat, ProcessInfo, ProcessOutput
from firepit.snapshots import Snapshot
from firepit.usage_models import LeaseMetrics, UsageSample

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def document(daemon: Daemon) -> Iterator[dict[str, Any]]:
    """The OpenAPI document, as ``GET /v1/openapi.json`` of the session's daemon serves it."""
    with firepit.Client(daemon.socket) as client:
        yield client.openapi()


def schema(document: dict[str, Any], name: str) -> Schema:
    found: Schema = document["components"]["schemas"][name]
    return found


def resolve(document: dict[str, Any], node: Schema) -> Schema:
    """``node`` with its ``$ref`` followed and its ``allOf`` parts merged into one object."""
    if "$ref" in node:
        return resolve(document, schema(document, node["$ref"].rsplit("/", 1)[1]))
    if "allOf" in node:
        merged: Schema = {"type": "object", "properties": {}, "required": []}
        for part in node["allOf"]:
            part = resolve(document, part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return merged
    return node


def properties(document: dict[str, Any], name: str) -> set[str]:
    return set(resolve(document, schema(document, name))["properties"])


class Recording(dict[str, Any]):
    """A JSON object that remembers which keys its reader asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)


def sample(document: dict[str, Any], node: Schema) -> Any:
    """A value of the schema that a correct reader accepts: every property present (optional ones
    too), the first value of an enum, the schema's example where it has one."""
    if "example" in node:
        return node["example"]
    node = resolve(document, node)
    if "example" in node:
        return node["example"]
    if "enum" in node:
        return node["enum"][0]
    if "oneOf" in node:
        options = [option for option in node["oneOf"] if option.get("type") != "null"]
        return sample(document, options[0])
    kind: str = node.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object" or "properties" in node:
        return Recording({key: sample(document, value) for key, value in node.get("properties", {}).items()})
    values: dict[str, Any] = {"integer": 1, "number": 1.5, "boolean": True, "string": "x"}
    if kind == "array":
        return [sample(document, node["items"])]
    return values[kind]


def test_the_served_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), sorted(ids)


def test_the_sdk_maps_every_error_code_the_daemon_publishes(document: dict[str, Any]) -> None:
    published = schema(document, "ErrorCode")["enum"]
    missing, unknown = set(published) - set(_BY_CODE), set(_BY_CODE) - set(published)
    assert not missing and not unknown, (
        f"errors.py lacks {sorted(missing)} and maps {sorted(unknown)} the daemon does not send"
    )
    statuses = schema(document, "ErrorCode")["x-http-statuses"]
    for code, status in zip(published, statuses, strict=True):
        error = firepit.error_from_code(code, "m", status)
        assert error.code == code and 400 <= status <= 599
        # A bad request is the client's to fix, a server error is not: the classes follow the status.
        if isinstance(error, firepit.BadRequest):
            assert 400 <= status < 500, code
        if isinstance(error, firepit.ServerError):
            assert 500 <= status < 600, code


MODELS: list[tuple[str, Callable[[Any], Any], set[str]]] = [
    # (schema, parser, fields the SDK leaves on purpose)
    ("LeaseResponse", LeaseInfo.from_json, {"expires_at"}),  # the same instant as expires_at_unix_ms
    ("ExecResponse", ExecResult.from_json, set()),
    ("ShapeStatusView", ShapeStatus.from_json, set()),
    ("PoolsResponse", Pools.from_json, {"host"}),  # the host's CPUs and memory, for the dashboard
    ("HealthResponse", Health.from_json, set()),
    ("PortForward", PortForward.from_json, set()),
    ("FileStat", FileStat.from_json, set()),
    ("DirEntry", DirEntry.from_json, set()),
    ("ExitStatusView", ExitStatus.from_json, set()),
    ("ProcessView", ProcessInfo.from_json, set()),
    ("ProcessOutputView", ProcessOutput.from_json, set()),
    ("UsageSample", UsageSample.from_json, set()),
    ("LeaseMetrics", LeaseMetrics.from_json, set()),
    ("SnapshotInfo", Snapshot.from_json, {"created_at"}),  # the same instant as created_at_unix_ms
]


@pytest.mark.parametrize(("name", "parse", "left"), MODELS, ids=[m[0] for m in MODELS])
def test_a_model_reads_exactly_the_fields_of_its_schema(
    document: dict[str, Any], name: str, parse: Callable[[Any], Any], left: set[str]
) -> None:
    body = sample(document, schema(document, name))
    parse(body)
    fields = properties(document, name)
    assert left <= fields, f"{name} no longer has {left - fields}"
    assert body.asked == fields - left, (
        f"{name}: the SDK reads {sorted(body.asked - fields)} that the daemon does not send, "
        f"and misses {sorted(fields - left - body.asked)}"
    )


def test_each_stream_event_is_read_whole(document: dict[str, Any]) -> None:
    variants = schema(document, "StreamEvent")["oneOf"]
    kinds = set()
    for variant in variants:
        event = sample(document, variant)
        kinds.add(event["type"])
        if event["type"] == "error":
            with pytest.raises(firepit.FirepitError) as raised:
                _sandbox_calls.event_from_json(event)
            assert raised.value.code == event["error"]
        else:
            _sandbox_calls.event_from_json(event)
        fields = set(resolve(document, variant)["properties"])
        assert event.asked == fields, f"{event['type']}: reads {event.asked}, schema has {fields}"
    assert kinds == {"started", "stdout", "stderr", "eof", "exit", "error"}


REQUESTS: list[tuple[str, Callable[[], _calls.Call[Any]], set[str]]] = [
    # (schema, a call with every argument given, fields that travel in the path instead)
    (
        "ShapeSpec",
        lambda: _calls.register_shape(
            "s",
            "/img",
            1,
            256,
            1,
            2,
            60,
            "cold",
            True,
            "nat",
            pause_idle=False,
            warm_up=True,
            disk_mb=64,
            warm_up_argv=["true"],
        ),
        {"name"},
    ),
    (
        "AcquireBody",
        lambda: _calls.acquire(
            "s",
            1,
            60,
            "key",
            ["10.0.0.0/8"],
            cpus=1,
            memory_mb=256,
            disk_mb=64,
            metadata={"job": "x"},
            auto_resume=True,
            on_expiry="pause",
            snapshot="s-1",
        ),
        set(),
    ),
    ("ForkRequest", lambda: snapshots.fork("l", 2, 60), set()),
    ("ExecBody", lambda: _calls.exec_("l", ["true"], {"A": "1"}, "/", b"\x00", 5, 10), set()),
    ("RenewRequest", lambda: _calls.renew("l", 60), set()),
    ("ForwardPortBody", lambda: _calls.forward_port("l", 8000), set()),
    (
        "SpawnBody",
        lambda: _calls.Call(
            "POST", "/", _calls._nothing, _sandbox_calls.spawn_body(["t"], {"A": "1"}, "/", b"x", 5)
        ),
        set(),
    ),
    (
        "StartProcessBody",
        lambda: _sandbox_calls.start_process("l", ["t"], "tag", {"A": "1"}, "/", 5, 1024),
        set(),
    ),
    ("MkdirBody", lambda: _sandbox_calls.mkdir("l", "/d", True, 0o755), set()),
    ("ChmodBody", lambda: _sandbox_calls.chmod("l", "/d", 0o755), set()),
    ("ChownBody", lambda: _sandbox_calls.chown("l", "/d", 1, 1), set()),
    ("RenameBody", lambda: _sandbox_calls.rename("l", "/a", "/b"), set()),
    ("SignalBody", lambda: _sandbox_calls.signal_process("l", 1, "TERM"), set()),
]


@pytest.mark.parametrize(("name", "call", "in_path"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_a_request_can_set_every_field_of_its_body(
    document: dict[str, Any], name: str, call: Callable[[], _calls.Call[Any]], in_path: set[str]
) -> None:
    body = call().body
    assert body is not None
    sent, fields = set(body) | in_path, properties(document, name)
    assert sent == fields, (
        f"{name}: the SDK cannot send {sorted(fields - sent)}, sends unknown {sorted(sent - fields)}"
    )
