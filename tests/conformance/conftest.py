"""Starts one real `hark serve` process for the session and hands out SDK clients for it.

Environment:
  HARK_BIN                       the binary (default: <repo>/target/debug/hark)
  HARK_CONFORMANCE_DATABASE_URL  run the server on this database (PostgreSQL) instead of SQLite
  HARK_CONFORMANCE_TIMEOUT       seconds to wait for asynchronous results (default 30)
  HARK_CONFORMANCE_KEEP          keep the data directory (config, server log) after the run
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import knockapi
import pytest
import requests

from support import Hark, Mgmt, SmtpSink, WebhookReceiver, unique

REPO_ROOT = Path(__file__).resolve().parents[2]
HARK_BIN = Path(os.environ.get("HARK_BIN", REPO_ROOT / "target" / "debug" / "hark"))
DATABASE_URL = os.environ.get("HARK_CONFORMANCE_DATABASE_URL") or None
STARTUP_TIMEOUT = 60.0

_server_log: Path | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(smtp_port: int) -> str:
    return f"""\
[outbound]
allow_private_networks = true   # the webhook receiver is on loopback

[[channels]]
key = "email"
type = "email"
provider = "smtp"
[channels.settings]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from_address = "hark@example.com"

[[channels]]
key = "webhook"
type = "http"
provider = "webhook"

# Holds push tokens as channel data; no test delivers through it.
[[channels]]
key = "push"
type = "push"
provider = "expo"

[[channels]]
key = "slack"
type = "chat"
provider = "slack"

# Renders SMS content; tests that use it trigger in sandbox mode, so nothing is sent.
[[channels]]
key = "sms"
type = "sms"
provider = "twilio"
[channels.settings]
account_sid = "ACconformance"
auth_token = "conformance"
from_number = "+15555550100"
"""


def _storage_args(data_dir: Path) -> list[str]:
    args = ["--data-dir", str(data_dir)]
    if DATABASE_URL:
        args += ["--database-url", DATABASE_URL]
    return args


def _cli_json(*args: str, data_dir: Path) -> dict[str, Any]:
    """Run a `hark` admin command that prints one JSON object and return it."""
    cmd = [str(HARK_BIN), *args, "--json", *_storage_args(data_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed nothing; stderr:\n{done.stderr}")
    return json.loads(lines[-1])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _log_tail(path: Path, lines: int = 60) -> str:
    """The end of the server log without colours and without backtrace frames."""
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except OSError:
        return "(no server log)"
    kept = [line for line in text.splitlines() if line.strip() and not line[0].isspace()]
    return "\n".join(kept[-lines:])


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hark serve exited with {process.returncode}:\n{_log_tail(log)}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"hark serve not healthy after {STARTUP_TIMEOUT:.0f}s:\n{_log_tail(log)}")


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def webhooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def hark(request: pytest.FixtureRequest, smtp: SmtpSink) -> Iterator[Hark]:
    global _server_log
    if not HARK_BIN.exists():
        pytest.exit(f"{HARK_BIN} not found; build it with `cargo build --bin hark`", returncode=2)

    data_dir = Path(tempfile.mkdtemp(prefix="hark-conformance-"))
    config = data_dir / "hark.toml"
    config.write_text(_config(smtp.port))
    _server_log = data_dir / "server.log"
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"

    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
    cmd = [
        str(HARK_BIN), "serve", "--listen", f"127.0.0.1:{port}", "--config", str(config),
        *_storage_args(data_dir),
    ]
    with open(_server_log, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(process, base_url, _server_log)
        keys = _cli_json("keys", "create", "--environment", "development", data_dir=data_dir)
        token = _cli_json("tokens", "create", data_dir=data_dir)
        assert keys["secret_key"].startswith("sk_"), keys
        assert keys["public_key"].startswith("pk_"), keys
        yield Hark(base_url, keys["secret_key"], keys["public_key"], token["service_token"], data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not (request.session.testsfailed or os.environ.get("HARK_CONFORMANCE_KEEP")):
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(hark: Hark) -> knockapi.Knock:
    """The official SDK pointed at Hark. No retries: the suite must see the first answer."""
    return knockapi.Knock(api_key=hark.secret_key, base_url=hark.base_url, max_retries=0)


@pytest.fixture(scope="session")
def mgmt(hark: Hark) -> Mgmt:
    return Mgmt(hark.base_url, hark.service_token)


@pytest.fixture(scope="session")
def feed_channel_id(mgmt: Mgmt) -> str:
    return mgmt.channel("in-app-feed")["id"]


@pytest.fixture
def make_workflow(mgmt: Mgmt) -> Callable[..., str]:
    """Create a committed, active workflow with a fresh key and return the key."""

    def make(steps: list[dict[str, Any]], prefix: str = "conf", **attrs: Any) -> str:
        key = unique(prefix)
        mgmt.upsert_workflow(key, steps, **attrs)
        return key

    return make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if failed and _server_log is not None:
        terminalreporter.section("hark server log (tail)")
        terminalreporter.write_line(_log_tail(_server_log))
        terminalreporter.write_line(f"full log and config kept in {_server_log.parent}")
