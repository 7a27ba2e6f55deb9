"""A real ``firepit serve`` for the tests: a private temp dir (config, socket, state, snapshot
templates, log), a Unix socket and a TCP listener with a random bearer token, a shape
``default`` (depth 1..2, snapshot fill) and a shape ``web`` with NAT (egress 10.1.0.0/16) on the guest image.

:meth:`Daemon.start` returns once ``/healthz`` answers (the daemon binds once its pools are
warm); :meth:`Daemon.stop` sends SIGTERM (the daemon destroys its VMs), checks that it exited 0
and that no process still runs out of the temp dir, and removes the dir.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TOKEN_ENV = "FIREPIT_SDK_TEST_TOKEN"
READY_WITHIN = 180.0

SDK_VARIABLES_CLEARED = ("FIREPIT_SOCKET", "FIREPIT_URL", "FIREPIT_TOKEN", "FIREPIT_TOKEN_FILE")
"""Variables the SDK reads that no test may inherit from the caller's shell (a test that wants one
sets it); the daemon does not get them either."""

SDK_VARIABLES_SET = ("XDG_RUNTIME_DIR", "TMPDIR")
"""Variables the SDK reads (for the default socket) that every test gets with a value of its own."""
STOP_WITHIN = 60.0


class DaemonError(Exception):
    """The daemon could not be started or did not stop cleanly."""


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string of a path is a valid TOML basic string


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Daemon:
    """A running ``firepit serve`` and where to reach it."""

    binary: Path
    image: Path
    dir: Path
    socket: Path
    url: str
    token: str
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, binary: Path, image: Path) -> Daemon:
        """Writes the config into a new private temp dir (nothing runs yet)."""
        directory = Path(tempfile.mkdtemp(prefix="firepit-sdk-test-"))
        daemon = cls(
            binary=binary,
            image=image,
            dir=directory,
            socket=directory / "api.sock",
            url=f"http://127.0.0.1:{free_tcp_port()}",
            token=secrets.token_hex(16),
        )
        daemon.config_path.write_text(daemon.config())
        return daemon

    @property
    def config_path(self) -> Path:
        return self.dir / "firepit.toml"

    @property
    def log_path(self) -> Path:
        return self.dir / "daemon.log"

    def config(self) -> str:
        """The daemon's TOML config: everything it writes lives under the temp dir."""
        return f"""
state_dir = {_toml_str(self.dir / "state")}

[listen]
socket = {_toml_str(self.socket)}
tcp = {_toml_str(self.url.removeprefix("http://"))}
token_env = "{TOKEN_ENV}"

[limits]
parallel_fills = 2

[leases]
default_ttl_secs = 300
max_ttl_secs = 3600

[shutdown]
budget_secs = 10

[usage]
interval_ms = 1000

[snapshots]
template_dir = {_toml_str(self.dir / "templates")}
keep_templates = false

[[shape]]
name = "default"
image = {_toml_str(self.image)}
depth = {{ low = 1, high = 2 }}
fill = "snapshot"

[[shape]]
name = "web"
image = {_toml_str(self.image)}
depth = {{ low = 1, high = 1 }}
fill = "snapshot"
network = {{ mode = "nat", egress = ["10.1.0.0/16"] }}
"""

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Starts the daemon and waits until ``/healthz`` answers on its socket."""
        env = {**os.environ, TOKEN_ENV: self.token, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        for name in (*SDK_VARIABLES_CLEARED, "FIREPIT_CONFIG"):
            env.pop(name, None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + READY_WITHIN
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=5) as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise DaemonError(f"`firepit serve` exited with {code}; its log:\n{self.log_tail()}")
                try:
                    if http.get("http://localhost/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise DaemonError(
                        f"`firepit serve` not ready within {READY_WITHIN} s; its log:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then checks: exit status 0, no process left running out of the temp dir, the
        temp dir removed. Raises :class:`DaemonError` on any failure (after cleaning up)."""
        problems: list[str] = []
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                problems.append(f"the daemon did not exit within {STOP_WITHIN} s of SIGTERM (killed)")
        if process is not None and process.returncode != 0:
            problems.append(f"the daemon exited with {process.returncode}")
        leftovers = processes_mentioning(self.dir)
        for pid, cmdline in leftovers:
            problems.append(f"process {pid} still runs out of the test dir: {cmdline[:200]}")
            os.kill(pid, signal.SIGKILL)
        if problems:
            problems.append(f"daemon log:\n{self.log_tail()}")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            problems.append(f"cannot remove {self.dir}")
        if problems:
            raise DaemonError("\n".join(problems))


def processes_mentioning(path: Path) -> list[tuple[int, str]]:
    """Processes (not this one) whose command line contains ``path``."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found
