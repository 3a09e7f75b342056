"""Real processes on loopback: origin servers under uvicorn and `edgeproxy serve` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Origin:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)


@dataclass
class Edge:
    port: int
    config: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    state_dir: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> httpx.Client:
        kwargs.setdefault("timeout", 30.0)
        client = httpx.Client(base_url=self.url, **kwargs)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def logs(self) -> str:
        return self.stderr.read_text()

    def access_log(self, count: int = 1) -> list[dict[str, object]]:
        """The access log entries, waiting (bounded) until at least `count` are written.

        A line is written after its response is sent, so a client can be ahead of it.
        """
        for _ in range(100):
            lines = self.stdout.read_text().splitlines()
            if len(lines) >= count:
                break
            time.sleep(0.05)
        return [json.loads(line) for line in lines]


def start_origin(tmp_path: Path, name: str, port: int | None = None) -> Origin:
    port = port or free_port()
    log = tmp_path / f"origin-{name}-{port}.log"
    env = {**os.environ, "ORIGIN_NAME": name}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.e2e.origin_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--ws", "websockets-sansio"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_until_up(f"http://127.0.0.1:{port}/echo", process, log)
    return Origin(name, port, process, log)


def start_edge(
    tmp_path: Path,
    rules: str,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Edge:
    port = port or free_port()
    config = tmp_path / "rules.yaml"
    config.write_text(rules)
    stdout, stderr = tmp_path / "edge.out", tmp_path / "edge.err"
    state_dir = tmp_path / "state"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgeproxy", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state_dir),
             *(extra_args or [])],
            cwd=tmp_path, stdout=out, stderr=err, env={**os.environ, **(env or {})},
        )  # fmt: skip
    wait_until_up(f"http://127.0.0.1:{port}/_edge/health", process, stderr)
    return Edge(port, config, process, stdout, stderr, state_dir)


@pytest.fixture
def origin_factory(tmp_path: Path) -> Iterator[Callable[..., Origin]]:
    started: list[Origin] = []

    def factory(name: str = "origin", port: int | None = None) -> Origin:
        origin = start_origin(tmp_path, name, port)
        started.append(origin)
        return origin

    yield factory
    for origin in started:
        origin.stop()


@pytest.fixture
def origin(origin_factory: Callable[..., Origin]) -> Origin:
    return origin_factory("a")


@pytest.fixture
def edge_factory(tmp_path: Path) -> Iterator[Callable[..., Edge]]:
    started: list[Edge] = []

    def factory(rules: str, **kwargs: object) -> Edge:
        edge = start_edge(tmp_path, rules, **kwargs)  # type: ignore[arg-type]
        started.append(edge)
        return edge

    yield factory
    for edge in started:
        for client in edge.clients:
            client.close()
        stop(edge.process)
