"""Error answers become typed exceptions: the daemon's codes map to classes, unknown codes to the
base class (answers built here; the real daemon's answers are in the other test files)."""

from __future__ import annotations

import httpx
import pytest

import firepit


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("unknown_shape", 404, firepit.UnknownShape),
        ("no_shape_fits", 400, firepit.NoShapeFits),
        ("exhausted", 503, firepit.Exhausted),
        ("shutting_down", 503, firepit.ShuttingDown),
        ("lease_not_found", 404, firepit.LeaseNotFound),
        ("bad_ttl", 400, firepit.BadTtl),
        ("bad_json", 400, firepit.BadRequest),
        ("bad_argv", 400, firepit.BadRequest),
        ("idempotency_conflict", 422, firepit.IdempotencyConflict),
        ("exec_refused", 422, firepit.ExecRefused),
        ("vm_unreachable", 502, firepit.VmUnreachable),
        ("unauthorized", 401, firepit.Unauthorized),
        ("shape_exists", 409, firepit.ShapeExists),
        ("invalid_shape", 422, firepit.InvalidShape),
        ("not_found", 404, firepit.NotFound),
        ("already_exists", 409, firepit.AlreadyExists),
        ("permission_denied", 403, firepit.PermissionDenied),
        ("is_a_directory", 409, firepit.IsADirectory),
        ("not_a_directory", 409, firepit.NotADirectory),
        ("directory_not_empty", 409, firepit.DirectoryNotEmpty),
        ("process_not_found", 404, firepit.ProcessNotFound),
        ("limit_reached", 429, firepit.LimitReached),
        ("io_error", 500, firepit.GuestIoError),
        ("invalid_input", 400, firepit.InvalidInput),
        ("bad_signal", 400, firepit.BadRequest),
        ("lease_ended", 410, firepit.LeaseEnded),
        ("unsupported", 501, firepit.Unsupported),
    ],
)
def test_known_codes_map_to_their_class(code: str, status: int, cls: type[firepit.FirepitError]) -> None:
    error = firepit.error_from_response(
        answer(status, b'{"error":"%s","message":"what to do"}' % code.encode())
    )
    assert type(error) is cls
    assert (error.code, error.status, error.message) == (code, status, "what to do")


def test_bad_ttl_is_a_bad_request() -> None:
    assert issubclass(firepit.BadTtl, firepit.BadRequest)


def test_an_unknown_code_maps_to_the_base_class() -> None:
    error = firepit.error_from_response(answer(500, b'{"error":"brand_new","message":"m"}'))
    assert type(error) is firepit.FirepitError and error.code == "brand_new" and error.status == 500


def test_retry_after_is_read_in_seconds() -> None:
    body = b'{"error":"exhausted","message":"none ready"}'
    error = firepit.error_from_response(answer(503, body, {"Retry-After": "2"}))
    assert isinstance(error, firepit.Exhausted) and error.retry_after == 2.0
    assert firepit.error_from_response(answer(503, body)).retry_after is None


def test_a_body_that_is_not_an_error_body_is_an_unexpected_response() -> None:
    error = firepit.error_from_response(answer(502, b"<html>Bad Gateway</html>"))
    assert type(error) is firepit.FirepitError and error.code == "unexpected_response" and error.status == 502
    assert "Bad Gateway" in error.message


def test_healthz_while_stopping_is_shutting_down() -> None:
    error = firepit.error_from_response(answer(503, b'{"status":"shutting_down"}'))
    assert isinstance(error, firepit.ShuttingDown)


def test_connect_errors_are_transport_errors_without_status() -> None:
    assert issubclass(firepit.ConnectError, firepit.TransportError)
    assert issubclass(firepit.TransportError, firepit.FirepitError)


def test_guest_errors_share_a_base_class_and_invalid_input_is_a_bad_request() -> None:
    for cls in (firepit.NotFound, firepit.DirectoryNotEmpty, firepit.ProcessNotFound, firepit.GuestIoError):
        assert issubclass(cls, firepit.GuestError)
    assert issubclass(firepit.InvalidInput, firepit.BadRequest)


def test_an_error_event_inside_a_stream_is_typed_by_its_code() -> None:
    error = firepit.error_from_code("lease_ended", "lease l-1 ended")
    assert type(error) is firepit.LeaseEnded and error.status is None and error.message == "lease l-1 ended"
    assert type(firepit.error_from_code("brand_new", "m")) is firepit.FirepitError
