"""What the sync and async clients share about HTTP: how to reach an endpoint, the headers, the
per-call timeout, and how transport failures become :class:`firepit.FirepitError` s.

Both clients keep one httpx connection pool for their whole life, so consecutive calls reuse a
kept-alive connection instead of connecting again (the daemon closes idle ones after a while;
httpx then opens a new one).
"""

from __future__ import annotations

import httpx

from .endpoint import Endpoint
from .errors import ConnectError, FirepitError, TransportError

BASE_URL_UNIX = "http://localhost"
"""The base URL of requests over a Unix socket (the host is only the ``Host`` header)."""

USER_AGENT = "firepit-python"


def base_url(endpoint: Endpoint) -> str:
    """Where requests go: the endpoint's URL, or a placeholder host over its Unix socket."""
    return endpoint.url if endpoint.url is not None else BASE_URL_UNIX


def headers(endpoint: Endpoint) -> dict[str, str]:
    """Headers of every request: the user agent and, with a token, ``Authorization: Bearer``."""
    result = {"User-Agent": USER_AGENT}
    if endpoint.token is not None:
        result["Authorization"] = f"Bearer {endpoint.token}"
    return result


def timeout(client_timeout: float, server_time: float) -> httpx.Timeout:
    """The client's timeout, with ``server_time`` more to read when the daemon may wait on purpose."""
    return httpx.Timeout(client_timeout + server_time, connect=client_timeout)


def transport_error(endpoint: Endpoint, error: httpx.TransportError) -> FirepitError:
    """A typed error for a failure before a complete answer arrived."""
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectError(
            "connect",
            f"cannot connect to the firepit daemon at {endpoint}: {error or type(error).__name__}. "
            "Is `firepit serve` running? Start it with `firepit serve`, or point FIREPIT_SOCKET "
            "or FIREPIT_URL (and FIREPIT_TOKEN) at a running daemon.",
        )
    code = "timeout" if isinstance(error, httpx.TimeoutException) else "transport"
    return TransportError(code, f"HTTP exchange with the daemon at {endpoint} failed: {error!r}")
