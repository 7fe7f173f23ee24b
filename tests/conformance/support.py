"""Helpers shared by the conformance tests: local sinks, polling and a Management API client.

Nothing here knows about Hark's internals; everything talks to the server over its wire
protocol, the way a Knock customer would.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TypeVar

import requests

T = TypeVar("T")

# How long to wait for asynchronous results (engine runs, deliveries).
DEFAULT_TIMEOUT = float(os.environ.get("HARK_CONFORMANCE_TIMEOUT", "30"))


def unique(prefix: str) -> str:
    """An id that no other test (or earlier run against the same database) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for(
    probe: Callable[[], T],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `probe` until it returns something truthy and return that value.

    Exceptions listed in `ignore` count as "not yet"; anything else propagates at once.
    On timeout the last value (or exception) is reported.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last = probe()
            last_error = None
            if last:
                return last
        except ignore as exc:  # noqa: PERF203 - polling loop
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}"
            ) from last_error
        time.sleep(interval)


@dataclass(frozen=True)
class Hark:
    """A running `hark serve` and the credentials created for it."""

    base_url: str
    secret_key: str
    public_key: str
    service_token: str
    data_dir: Path


# --------------------------------------------------------------------------- SMTP sink


@dataclass
class ReceivedEmail:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["subject"] or "")

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


def _address(arg: str) -> str:
    """`FROM:<a@b> SIZE=12` -> `a@b`."""
    start, end = arg.find("<"), arg.find(">")
    if start != -1 and end > start:
        return arg[start + 1 : end]
    return arg.partition(":")[2].strip().split(" ")[0]


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: "_SmtpServer"

    def _reply(self, *lines: str) -> None:
        # Multi-line replies use "250-" for every line but the last.
        code, texts = lines[0][:3], [line[4:] for line in lines]
        out = [f"{code}-{t}" for t in texts[:-1]] + [f"{code} {texts[-1]}"]
        self.wfile.write(("\r\n".join(out) + "\r\n").encode())

    def handle(self) -> None:
        self._reply("220 hark-conformance SMTP sink")
        mail_from: str | None = None
        rcpt_to: list[str] = []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            verb, _, arg = raw.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self._reply("250 localhost", "250 8BITMIME", "250 SMTPUTF8", "250 SIZE 52428800")
            elif verb == "HELO":
                self._reply("250 localhost")
            elif verb == "MAIL":
                mail_from, rcpt_to = _address(arg), []
                self._reply("250 OK")
            elif verb == "RCPT":
                if mail_from is None:
                    self._reply("503 MAIL first")
                else:
                    rcpt_to.append(_address(arg))
                    self._reply("250 OK")
            elif verb == "DATA":
                if not rcpt_to:
                    self._reply("503 RCPT first")
                    continue
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return
                message = email.message_from_bytes(data, policy=email.policy.default)
                self.server.sink.record(ReceivedEmail(mail_from or "", rcpt_to, message))
                mail_from, rcpt_to = None, []
                self._reply("250 OK queued")
            elif verb == "RSET":
                mail_from, rcpt_to = None, []
                self._reply("250 OK")
            elif verb == "NOOP":
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            else:
                self._reply("502 Command not implemented")

    def _read_data(self) -> bytes | None:
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b"."):  # dot-unstuffing (RFC 5321 4.5.2)
                line = line[1:]
            lines.append(line)


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: "SmtpSink") -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.sink = sink


class SmtpSink:
    """A minimal SMTP server on loopback that keeps every message it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[ReceivedEmail] = []
        self._server = _SmtpServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "SmtpSink":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, received: ReceivedEmail) -> None:
        with self._lock:
            self._messages.append(received)

    def messages_to(self, address: str) -> list[ReceivedEmail]:
        with self._lock:
            return [m for m in self._messages if address in m.rcpt_to]

    def all(self) -> list[ReceivedEmail]:
        with self._lock:
            return list(self._messages)


# --------------------------------------------------------------------------- webhook receiver


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: "_WebhookServer"
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # blank line after the last chunk (no trailers)
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        request = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._body(),
        )
        self.server.receiver.record(request)
        payload = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: "WebhookReceiver") -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.receiver = receiver


class WebhookReceiver:
    """An HTTP server on loopback that records every request and answers 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._server = _WebhookServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self._requests if r.path.split("?")[0] == path]


# --------------------------------------------------------------------------- Management API


class MgmtError(AssertionError):
    pass


@dataclass
class Mgmt:
    """The few Management API calls the suite needs, over plain HTTP."""

    base_url: str
    service_token: str
    environment: str = "development"
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.service_token}", **kwargs.pop("headers", {})}
        params = {"environment": self.environment, **kwargs.pop("params", {})}
        response = self.session.request(
            method, f"{self.base_url}/mgmt{path}", headers=headers, params=params, timeout=30, **kwargs
        )
        if not response.ok:
            raise MgmtError(
                f"{method} /mgmt{path} answered {response.status_code}: {response.text[:2000]}"
            )
        return response.json() if response.content else None

    def channels(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/channels")["entries"]

    def channel(self, key: str) -> dict[str, Any]:
        for channel in self.channels():
            if channel["key"] == key:
                return channel
        raise MgmtError(f"no channel with key {key!r} in GET /mgmt/v1/channels")

    def upsert_workflow(self, key: str, steps: list[dict[str, Any]], **attrs: Any) -> dict[str, Any]:
        """Create (or replace) and commit a workflow, and make sure it is active."""
        body = {"workflow": {"name": attrs.pop("name", key), "steps": steps, **attrs}}
        workflow = self.request(
            "PUT", f"/v1/workflows/{key}", params={"commit": "true"}, json=body
        )["workflow"]
        if workflow.get("active") is False:
            workflow = self.request(
                "PUT", f"/v1/workflows/{key}/activate", json={"status": True}
            )["workflow"]
        return workflow


# --------------------------------------------------------------------------- workflow steps


def feed_step(ref: str = "feed", **template: Any) -> dict[str, Any]:
    return {
        "type": "channel",
        "ref": ref,
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "Hello **{{ recipient.name }}**", **template},
    }


def email_step(subject: str, html_body: str, ref: str = "email") -> dict[str, Any]:
    return {
        "type": "channel",
        "ref": ref,
        "channel_key": "email",
        "template": {"subject": subject, "html_body": html_body, "settings": {}},
    }


def webhook_step(
    url: str,
    *,
    method: str = "post",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    ref: str = "webhook",
) -> dict[str, Any]:
    return {
        "type": "channel",
        "ref": ref,
        "channel_key": "webhook",
        "template": {
            "method": method,
            "url": url,
            "headers": [{"key": k, "value": v} for k, v in (headers or {}).items()],
            "body": body,
        },
    }


def delay_step(value: int, unit: str = "hours", ref: str = "delay") -> dict[str, Any]:
    return {"type": "delay", "ref": ref, "settings": {"delay_for": {"unit": unit, "value": value}}}


def batch_step(
    value: int, unit: str = "seconds", ref: str = "batch", **settings: Any
) -> dict[str, Any]:
    """A Management API `WorkflowBatchStep` with a fixed window."""
    return {
        "type": "batch",
        "ref": ref,
        "settings": {"batch_window": {"unit": unit, "value": value}, **settings},
    }


def throttle_step(
    value: int, unit: str = "hours", limit: int = 1, ref: str = "throttle", **settings: Any
) -> dict[str, Any]:
    """A Management API `WorkflowThrottleStep`."""
    return {
        "type": "throttle",
        "ref": ref,
        "settings": {
            "throttle_window": {"unit": unit, "value": value},
            "throttle_limit": limit,
            **settings,
        },
    }


# --------------------------------------------------------------------------- workflow runs


def wait_for_runs(client: Any, workflow: str, count: int, status: str = "completed") -> list[Any]:
    """Wait until `count` recipient runs of `workflow` have `status`; return all its runs.

    `client` is a `knockapi.Knock`.
    """

    def probe() -> list[Any] | None:
        runs = list(client.workflow_recipient_runs.list(workflow=workflow))
        return runs if sum(run.status == status for run in runs) >= count else None

    return wait_for(probe, f"{count} {status} run(s) of workflow {workflow}")
