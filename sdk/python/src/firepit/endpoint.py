"""Where the daemon listens, and how a client finds it when not told.

The rule is the daemon's own (``crates/api/src/endpoint.rs``), so a client started with no
arguments talks to a ``firepit serve`` started with no config:

1. an explicit ``socket=`` or ``url=`` (not both);
2. else ``$FIREPIT_SOCKET`` or ``$FIREPIT_URL`` (not both), as the ``firepit`` CLI reads them;
3. else the default socket: ``$XDG_RUNTIME_DIR/firepit/firepit.sock``, else
   ``/run/firepit/firepit.sock`` for root, else ``<tmp>/firepit-<uid>/firepit.sock``.

A TCP endpoint carries a bearer token: ``token=``, else ``$FIREPIT_TOKEN``, else the contents of
the file ``$FIREPIT_TOKEN_FILE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Endpoint", "default_runtime_dir", "default_socket_path", "resolve_endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """A daemon's address: a Unix socket path, or an ``http(s)://host:port`` URL and its token.

    The token never appears in ``repr()``.

    Example::

        endpoint = firepit.Endpoint(url="http://127.0.0.1:7070", token="secret-token-1234")
        assert str(endpoint) == "http://127.0.0.1:7070" and "secret" not in repr(endpoint)
    """

    socket: Path | None = None
    url: str | None = None
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.socket is None) == (self.url is None):
            raise ValueError("an Endpoint has either a socket or a url")

    def __str__(self) -> str:
        return f"unix:{self.socket}" if self.socket is not None else str(self.url)


def default_runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/firepit``, else ``/run/firepit`` for root, else ``<tmp>/firepit-<uid>``.

    Example::

        assert firepit.default_runtime_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/firepit")
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "firepit"
    uid = os.getuid()
    if uid == 0:
        return Path("/run/firepit")
    return Path(env.get("TMPDIR") or "/tmp") / f"firepit-{uid}"


def default_socket_path(env: Mapping[str, str] | None = None) -> Path:
    """``<runtime dir>/firepit.sock``: where ``firepit serve`` listens without a config."""
    return default_runtime_dir(env) / "firepit.sock"


def resolve_endpoint(
    socket: str | os.PathLike[str] | None = None,
    url: str | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Endpoint:
    """The endpoint a client uses for these arguments and environment (see the module's rule).

    Raises :class:`ValueError` when both a socket and a URL are given (or both variables set),
    for a URL that is not ``http://`` or ``https://``, or an unreadable ``$FIREPIT_TOKEN_FILE``.

    Example::

        endpoint = firepit.resolve_endpoint(env={"FIREPIT_URL": "http://127.0.0.1:7070",
                                                 "FIREPIT_TOKEN": "0123456789abcdef"})
        assert endpoint.url == "http://127.0.0.1:7070" and endpoint.token == "0123456789abcdef"
    """
    env = os.environ if env is None else env
    if socket is not None and url is not None:
        raise ValueError("give either socket= or url=, not both")
    if socket is None and url is None:
        env_socket, env_url = env.get("FIREPIT_SOCKET") or None, env.get("FIREPIT_URL") or None
        if env_socket is not None and env_url is not None:
            raise ValueError("FIREPIT_SOCKET and FIREPIT_URL are both set: unset one")
        socket, url = env_socket, env_url
    if url is not None:
        return Endpoint(url=_check_url(url), token=token if token is not None else _env_token(env))
    path = Path(socket) if socket is not None else default_socket_path(env)
    return Endpoint(socket=path, token=token)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"bad daemon URL {url!r}: use http://host:port")
    return url.rstrip("/")


def _env_token(env: Mapping[str, str]) -> str | None:
    token = env.get("FIREPIT_TOKEN")
    if token:
        return token.strip()
    token_file = env.get("FIREPIT_TOKEN_FILE")
    if not token_file:
        return None
    try:
        return Path(token_file).read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read the token file FIREPIT_TOKEN_FILE={token_file}: {error}") from error
