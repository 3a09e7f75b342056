"""Starting, waiting for and stopping the servers a benchmark loads, and the nginx origin.

Every server runs pinned to one CPU in its own session, its output goes to a log file, and
it is stopped (SIGTERM, then SIGKILL after STOP_TIMEOUT) when its `with` block exits,
however it exits.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from bench.floor import BODY

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = "0"
LOAD_CPU = "1"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# Pids of the servers running now, so CPU accounting can tell their load from others'.
RUNNING: set[int] = set()


class BenchError(Exception):
    """A server could not be started or measured; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    return http_request("GET", url, timeout)


def http_request(method: str, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One request without a body on a new connection: (status, body)."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"


@contextlib.contextmanager
def running(
    name: str,
    argv: list[str],
    *,
    cpu: str,
    ready_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` pinned to `cpu` until the block exits, then stop it with `stop_signal`;
    raise BenchError if it exits or does not answer 200 on `ready_url` within
    READY_TIMEOUT seconds."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    RUNNING.add(proc.pid)
    try:
        wait_ready(name, proc, ready_url, log)
        yield proc
    finally:
        stop(proc, stop_signal)
        RUNNING.discard(proc.pid)


def wait_ready(name: str, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode} before answering {url}; "
                f"last output:\n{tail(log)}"
            )
        try:
            status, _ = http_get(url, timeout=1.0)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"status {status}"
        time.sleep(0.1)
    raise BenchError(
        f"{name} did not answer 200 on {url} within {READY_TIMEOUT:.0f} s (last: {last}); "
        f"last output:\n{tail(log)}"
    )


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Send `sig` to the process group; SIGKILL it if it has not exited after STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    # Each server runs in its own session, so its group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # The default (1000) would make wrk and the proxies under test reconnect every
    # 1000 requests; a real origin keeps its connections.
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location = /_nginx_status {{
            stub_status;
        }}
        location = /hello {{
            default_type text/plain;
            return 200 "hello, world\\n";
        }}
        location = /cached-1k {{
            default_type text/plain;
            add_header Cache-Control "public, max-age=3600";
            alias {dir}/www/1k;
        }}
        location / {{
            default_type text/plain;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_origin(tmp: Path) -> Iterator[str]:
    """Serve /1k (the floor's 1 KiB body) and /hello from nginx on LOAD_CPU; yield its URL."""
    root = tmp / "nginx"
    (root / "www").mkdir(parents=True)
    (root / "www" / "1k").write_bytes(BODY)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=root, port=port))
    base = f"http://127.0.0.1:{port}"
    argv = ["nginx", "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
    with running("nginx", argv, cpu=LOAD_CPU, ready_url=base + "/hello", log=root / "out.log"):
        yield base


def origin_counters(origin: str) -> tuple[int, int]:
    """(connections accepted, requests served) by nginx so far, not counting this query."""
    status, body = http_get(origin + "/_nginx_status")
    if status != 200:
        raise BenchError(f"nginx stub_status answered {status}")
    # "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: ..."
    accepts, _handled, requests = (int(n) for n in body.decode().splitlines()[2].split())
    return accepts - 1, requests - 1
