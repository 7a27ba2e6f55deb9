"""How a client finds the daemon (no daemon needed): arguments, environment, the default socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import firepit


def test_default_socket_prefers_xdg_runtime_dir() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert firepit.default_socket_path(env) == Path("/run/user/1000/firepit/firepit.sock")


def test_default_socket_for_root_is_under_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert firepit.default_socket_path({}) == Path("/run/firepit/firepit.sock")


def test_default_socket_for_a_user_is_under_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    assert firepit.default_socket_path({}) == Path("/tmp/firepit-1234/firepit.sock")
    assert firepit.default_socket_path({"TMPDIR": "/var/tmp"}) == Path("/var/tmp/firepit-1234/firepit.sock")
    assert firepit.default_socket_path({"XDG_RUNTIME_DIR": ""}) == Path("/tmp/firepit-1234/firepit.sock")


def test_no_arguments_and_no_environment_means_the_default_socket() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/7"}
    endpoint = firepit.resolve_endpoint(env=env)
    assert endpoint.socket == Path("/run/user/7/firepit/firepit.sock") and endpoint.url is None


def test_environment_names_the_socket_or_the_url_with_its_token(tmp_path: Path) -> None:
    assert firepit.resolve_endpoint(env={"FIREPIT_SOCKET": "/s.sock"}).socket == Path("/s.sock")
    endpoint = firepit.resolve_endpoint(
        env={"FIREPIT_URL": "http://127.0.0.1:7070/", "FIREPIT_TOKEN": "t" * 20}
    )
    assert (endpoint.url, endpoint.token) == ("http://127.0.0.1:7070", "t" * 20)
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456\n")
    endpoint = firepit.resolve_endpoint(
        env={"FIREPIT_URL": "http://h:1", "FIREPIT_TOKEN_FILE": str(token_file)}
    )
    assert endpoint.token == "from-a-file-0123456"


def test_arguments_win_over_the_environment() -> None:
    env = {"FIREPIT_URL": "http://127.0.0.1:7070", "FIREPIT_TOKEN": "env-token-0123456789"}
    assert firepit.resolve_endpoint(socket="/x.sock", env=env).socket == Path("/x.sock")
    endpoint = firepit.resolve_endpoint(url="http://other:1", token="arg-token-0123456789", env=env)
    assert (endpoint.url, endpoint.token) == ("http://other:1", "arg-token-0123456789")


def test_both_socket_and_url_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        firepit.resolve_endpoint(socket="/x.sock", url="http://h:1", env={})
    with pytest.raises(ValueError, match="both set"):
        firepit.resolve_endpoint(env={"FIREPIT_SOCKET": "/x.sock", "FIREPIT_URL": "http://h:1"})


def test_a_url_must_be_http() -> None:
    for url in ["unix:/x.sock", "127.0.0.1:7070", "ftp://h:1", "http://h:1/?q=1"]:
        with pytest.raises(ValueError, match="bad daemon URL"):
            firepit.resolve_endpoint(url=url, env={})


def test_the_token_never_shows_in_repr() -> None:
    endpoint = firepit.Endpoint(url="http://127.0.0.1:7070", token="very-secret-token-123")
    client = firepit.Client(url="http://127.0.0.1:7070", token="very-secret-token-123")
    try:
        for text in (repr(endpoint), str(endpoint), repr(client)):
            assert "very-secret" not in text
    finally:
        client.close()
