"""The daemon-wide endpoints on a real daemon: health, pools, metrics, OpenAPI, raw requests and
streamed answers; sync and async."""

from __future__ import annotations

import pytest

import firepit

OPENAPI_PATHS = [
    "/v1/leases",
    "/v1/leases/{id}",
    "/v1/leases/{id}/exec",
    "/v1/leases/{id}/renew",
    "/v1/pools",
    "/v1/shapes/{name}",
    "/metrics",
    "/healthz",
    "/v1/openapi.json",
]


def check_default_shape(pools: firepit.Pools) -> None:
    default = pools.shape("default")
    assert (default.depth_low, default.depth_high) == (1, 2)
    assert default.fill == "snapshot" and default.accelerator in ("kvm", "tcg")
    assert default.ready + default.filling + default.leased >= 1
    assert pools.uptime_secs >= 0 and pools.leases >= 0
    with pytest.raises(KeyError):
        pools.shape("no-such-shape")


def test_healthz_pools_metrics_openapi(client: firepit.Client) -> None:
    assert client.healthz() == firepit.Health(status="ok")
    check_default_shape(client.pools())
    metrics = client.metrics()
    assert "# TYPE firepit_daemon_acquires counter" in metrics
    document = client.openapi()
    assert document["openapi"].startswith("3.")
    assert set(OPENAPI_PATHS) <= set(document["paths"])


@pytest.mark.anyio
async def test_healthz_pools_metrics_openapi_async(aclient: firepit.AsyncClient) -> None:
    assert await aclient.healthz() == firepit.Health(status="ok")
    check_default_shape(await aclient.pools())
    assert "# TYPE firepit_daemon_acquires counter" in await aclient.metrics()
    assert set(OPENAPI_PATHS) <= set((await aclient.openapi())["paths"])


def test_a_raw_request_returns_any_status_and_its_error_is_typed(client: firepit.Client) -> None:
    response = client.request(
        "POST", "/v1/leases", content=b"[]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = firepit.error_from_response(response)
    assert isinstance(error, firepit.BadRequest) and error.code == "bad_json"
    wrong = firepit.error_from_response(client.request("PATCH", "/v1/pools"))
    assert type(wrong) is firepit.BadRequest and wrong.code == "method_not_allowed" and wrong.status == 405
    # An unknown endpoint has its own code: `not_found` is a missing guest path.
    missing = firepit.error_from_response(client.request("GET", "/v1/no-such-endpoint"))
    assert (
        type(missing) is firepit.BadRequest and missing.code == "unknown_endpoint" and missing.status == 404
    )


def test_a_streamed_answer_is_read_piecewise_and_an_error_raises(client: firepit.Client) -> None:
    with client.stream("GET", "/metrics") as response:
        lines = list(response.iter_lines())
    assert "# TYPE firepit_daemon_acquires counter" in lines
    with pytest.raises(firepit.FirepitError) as raised, client.stream("GET", "/v1/no-such-endpoint"):
        pytest.fail("an error answer must not be yielded")
    assert raised.value.code == "unknown_endpoint"


@pytest.mark.anyio
async def test_a_streamed_answer_is_read_piecewise_and_an_error_raises_async(
    aclient: firepit.AsyncClient,
) -> None:
    async with aclient.stream("GET", "/metrics") as response:
        lines = [line async for line in response.aiter_lines()]
    assert "# TYPE firepit_daemon_acquires counter" in lines
    raw = await aclient.request("DELETE", "/v1/leases/l-0000")
    assert isinstance(firepit.error_from_response(raw), firepit.LeaseNotFound)
    with pytest.raises(firepit.FirepitError) as raised:
        async with aclient.stream("GET", "/v1/no-such-endpoint"):
            pytest.fail("an error answer must not be yielded")
    assert raised.value.code == "unknown_endpoint"


def test_calls_reuse_one_kept_alive_connection(client: firepit.Client) -> None:
    streams = []
    for _ in range(5):
        response = client.request("GET", "/healthz")
        assert response.status_code == 200
        streams.append(response.extensions["network_stream"])
    client.pools()
    assert all(stream is streams[0] for stream in streams), "a call opened a new connection"
