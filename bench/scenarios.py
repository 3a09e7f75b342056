"""The named benchmark scenarios.

A scenario is a generator registered with `@scenario(name, label)`: it starts what it needs
through `Bench`, yields the URL wrk should GET (or a `Load`, bench/load.py, for another
method, a Lua script or a check of its own before loading), and everything it started stops
when the run is over. A new one is a few lines, e.g. edgeproxy serving a static file:

    @scenario("static-1k", "edgeproxy static file, 1 KiB")
    def static_1k(bench: Bench) -> Iterator[str]:
        (bench.tmp / "site").mkdir()
        (bench.tmp / "site" / "1k").write_bytes(BODY)
        with bench.edgeproxy("static-1k", STATIC_RULES) as base:
            yield base + "/1k"

Every body is 1 KiB (the floor's BODY, which nginx also serves as /1k) so that ratios to
the floor compare like with like.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import objects, workerd
from bench.floor import BODY
from bench.load import Load
from bench.servers import SERVER_CPU, BenchError, free_port, http_get, running, tail


@dataclass(frozen=True)
class Bench:
    """What a scenario gets: a scratch directory and the running nginx origin's base URL."""

    tmp: Path
    origin: str

    def uvicorn(
        self, name: str, app: str, *, ready_path: str = "/", env: dict[str, str] | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """Serve `app` (module:attr) as edgeproxy is served: httptools, uvloop, one worker,
        no access log. The block gets the server's base URL."""
        port = free_port()
        argv = [
            sys.executable, "-m", "uvicorn", app,
            "--host", "127.0.0.1", "--port", str(port),
            "--http", "httptools", "--loop", "uvloop", "--workers", "1",
            "--lifespan", "on", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        return self._server(name, argv, port, ready_path, env)

    def granian(self, name: str, app: str) -> contextlib.AbstractContextManager[str]:
        """Serve `app` on granian (ASGI, uvloop, one worker, HTTP/1 only, no access log)."""
        port = free_port()
        argv = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
            "--http", "1", "--workers", "1", "--host", "127.0.0.1", "--port", str(port), app,
        ]  # fmt: skip
        return self._server(name, argv, port, "/", None)

    def edgeproxy(
        self, name: str, rules: str, *, state: Path | None = None, kill: bool = False
    ) -> contextlib.AbstractContextManager[str]:
        """Run `python -m edgeproxy serve` with `rules` as rules.yaml (`{origin}` in it
        becomes the nginx URL, `{tmp}` the scratch directory) and `state` as its state
        directory (default: one of its own). `kill` stops it with SIGKILL rather than
        SIGTERM. The block gets the base URL."""
        port = free_port()
        config = self.tmp / f"{name}.rules.yaml"
        config.write_text(rules.format(origin=self.origin, tmp=self.tmp))
        argv = [
            sys.executable, "-m", "edgeproxy", "serve", "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--state-dir", str(state or self.tmp / f"{name}.state"),
        ]  # fmt: skip
        return self._server(name, argv, port, "/_edge/health", None, kill)

    def workerd(
        self, name: str, binary: Path, directory: Path, *, kill: bool = False
    ) -> contextlib.AbstractContextManager[str]:
        """Run workerd with the counter config (bench/workerd.py) in `directory`, its
        objects stored there; `kill` as for edgeproxy. The block gets the base URL."""
        port = free_port()
        argv = [str(binary), "serve", str(workerd.config(directory, port))]
        return self._server(name, argv, port, "/", None, kill)

    @contextlib.contextmanager
    def _server(
        self,
        name: str,
        argv: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None,
        kill: bool = False,
    ) -> Iterator[str]:
        base = f"http://127.0.0.1:{port}"
        log = self.tmp / f"{name}.log"
        stop_signal = signal.SIGKILL if kill else signal.SIGTERM
        with running(
            name,
            argv,
            cpu=SERVER_CPU,
            ready_url=base + ready_path,
            log=log,
            env=env,
            stop_signal=stop_signal,
        ):
            try:
                yield base
            except BenchError as exc:
                raise BenchError(f"{exc}\n{name} output:\n{tail(log)}") from exc


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    start: Callable[[Bench], contextlib.AbstractContextManager[str | Load]]


SCENARIOS: dict[str, Scenario] = {}
Generator = Callable[[Bench], Iterator[str]] | Callable[[Bench], Iterator[Load]]


def scenario(name: str, label: str) -> Callable[[Generator], Generator]:
    """Register a generator `fn(bench)` that starts a server and yields the URL to load
    with GET, or a `Load` (bench/load.py) for anything else."""

    def register(fn: Generator) -> Generator:
        SCENARIOS[name] = Scenario(name, label, contextlib.contextmanager(fn))
        return fn

    return register


PROXY_RULES = """\
server:
  access_log: false
origins:
  nginx:
    targets: ["{origin}"]
routes:
  - match: {{path: /}}
    proxy: nginx
"""


@scenario("floor", "raw ASGI app on uvicorn, 1 KiB")
def floor(bench: Bench) -> Iterator[str]:
    with bench.uvicorn("floor", "bench.floor:app") as base:
        yield base + "/"


@scenario("floor-granian", "the same raw ASGI app on granian, 1 KiB (server choice)")
def floor_granian(bench: Bench) -> Iterator[str]:
    with bench.granian("floor-granian", "bench.floor:app") as base:
        yield base + "/"


@scenario("nginx-direct", "nginx origin itself, 1 KiB (shares CPU 1 with wrk)")
def nginx_direct(bench: Bench) -> Iterator[str]:
    yield bench.origin + "/1k"


@scenario("uvicorn-aiohttp-proxy", "raw ASGI + one aiohttp session -> nginx, 1 KiB")
def naive_proxy(bench: Bench) -> Iterator[str]:
    env = {"NAIVE_PROXY_UPSTREAM": bench.origin}
    with bench.uvicorn("naive-proxy", "bench.naive_proxy:app", ready_path="/1k", env=env) as base:
        yield base + "/1k"


@scenario("proxy", "edgeproxy pass-through -> nginx, 1 KiB")
def proxy(bench: Bench) -> Iterator[str]:
    with bench.edgeproxy("proxy", PROXY_RULES) as base:
        yield base + "/1k"


CACHE_RULES = """\
server:
  access_log: false
origins:
  nginx:
    targets: ["{origin}"]
routes:
  - match: {{path: /}}
    proxy: nginx
    cache: {{}}
"""


@scenario("cache-hit", "edgeproxy answering a 1 KiB response from its cache")
def cache_hit(bench: Bench) -> Iterator[str]:
    with bench.edgeproxy("cache-hit", CACHE_RULES) as base:
        yield base + "/cached-1k"


STATIC_RULES = """\
server:
  access_log: false
sites:
  bench:
    source: {tmp}/static-site
routes:
  - match: {{path: /}}
    site: bench
"""


def _static_site(bench: Bench) -> None:
    site = bench.tmp / "static-site"
    if not site.exists():
        site.mkdir()
        (site / "index.html").write_text("<h1>bench</h1>")
        (site / "1k.txt").write_bytes(BODY)
        (site / "100k.txt").write_bytes(BODY * 100)


@scenario("static-1k", "edgeproxy serving a 1 KiB static file")
def static_1k(bench: Bench) -> Iterator[str]:
    _static_site(bench)
    with bench.edgeproxy("static-1k", STATIC_RULES) as base:
        yield base + "/1k.txt"


@scenario("static-100k", "edgeproxy serving a 100 KiB static file")
def static_100k(bench: Bench) -> Iterator[str]:
    _static_site(bench)
    with bench.edgeproxy("static-100k", STATIC_RULES) as base:
        yield base + "/100k.txt"


FUNCTION_RULES = """\
server:
  access_log: false
  handler_reports: false   # per-request output, off like the access log
sites:
  bench:
    source: {tmp}/function-site
routes:
  - match: {{path: /}}
    site: bench
"""

HELLO_FUNCTION = """\
from starlette.responses import Response


async def on_request_get(request, env, ctx):
    return Response(b"x" * 1024, media_type="application/octet-stream")
"""


@scenario("function", "edgeproxy site function (functions/hello.py) answering 1 KiB")
def function(bench: Bench) -> Iterator[Load]:
    site = bench.tmp / "function-site"
    (site / "functions").mkdir(parents=True)
    (site / "index.html").write_text("<h1>bench</h1>")
    (site / "functions" / "hello.py").write_text(HELLO_FUNCTION)
    with bench.edgeproxy("function", FUNCTION_RULES) as base:
        yield Load(base + "/hello", probe=lambda: _expect_body(base + "/hello", b"x" * 1024))


def _expect_body(url: str, body: bytes) -> None:
    """A 200 with `body`: the site answers unknown paths with its index.html too, so a 200
    alone does not show that the function ran."""
    status, got = http_get(url)
    if status != 200 or got != body:
        raise BenchError(
            f"GET {url} answered {status} with {got[:80]!r} ({len(got)} bytes), "
            f"not the function's {len(body)} bytes"
        )


# Each edgeproxy counter scenario runs with its workerd twin in the same run (run.py).
@scenario("counter-1", "edgeproxy durable-object counter, one object, POST")
def counter_1(bench: Bench) -> Iterator[Load]:
    yield from objects.edgeproxy_counter(bench, "counter-1", 1)


@scenario("counter-1000", "edgeproxy durable-object counter, 1,000 objects, POST")
def counter_1000(bench: Bench) -> Iterator[Load]:
    yield from objects.edgeproxy_counter(bench, "counter-1000", 1000)


@scenario("workerd-counter-1", f"workerd {workerd.VERSION} counter, one object, POST")
def workerd_counter_1(bench: Bench) -> Iterator[Load]:
    yield from objects.workerd_counter(bench, "workerd-counter-1", 1)


@scenario("workerd-counter-1000", f"workerd {workerd.VERSION} counter, 1,000 objects, POST")
def workerd_counter_1000(bench: Bench) -> Iterator[Load]:
    yield from objects.workerd_counter(bench, "workerd-counter-1000", 1000)


DEFAULT = [
    "floor",
    "floor-granian",
    "nginx-direct",
    "uvicorn-aiohttp-proxy",
    "proxy",
    "static-1k",
    "static-100k",
    "cache-hit",
    "function",
    "counter-1",
    "counter-1000",
]
