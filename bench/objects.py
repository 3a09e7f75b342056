"""The durable-object counter, on edgeproxy and on workerd, and the check of what it stored.

Both servers answer `POST /counter?name=N` by sending the request to the object named N,
whose `fetch` reads "n", stores n + 1 and answers it. wrk posts either to one name (every
request queues on one object) or round-robin over 1,000 names.

After the runs the server is killed (SIGKILL, so nothing is flushed on the way out) in
the middle of one more load, started again on the same storage, and every object the load
touched is read back: the increments stored must be at least the requests wrk saw
answered (an acknowledged count is never lost, even one answered just before the kill)
and at most that plus the requests that may have been in flight unseen.
"""

from __future__ import annotations

import functools
import http.client
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bench import workerd
from bench.load import WRK_REPORT, BackgroundWrk, Load, Tally
from bench.servers import BenchError, http_request

if TYPE_CHECKING:
    from bench.scenarios import Bench

PROBE = "probe"
# The server is killed this far into a run of CRASH_SECONDS at CRASH_CONNECTIONS; wrk then
# sees only refused connections until the run ends.
KILL_AFTER = 1.0
CRASH_SECONDS = 2
CRASH_CONNECTIONS = 64

COUNTER_RULES = """\
server: {{access_log: false, handler_reports: false}}
sites:
  counter:
    source: {tmp}/counter-site
objects:
  default: {{shards: 4}}
  namespaces:
    COUNTER: {{class: {tmp}/counter.py:Counter}}
routes:
  - match: {{path: /}}
    site: counter
"""

COUNTER_FUNCTION = """\
async def on_request_post(request, env, ctx):
    ns = env.COUNTER
    return await ns.get(ns.id_from_name(request.query_params.get("name", "one"))).fetch(request)
"""

COUNTER_CLASS = """\
from starlette.responses import PlainTextResponse

from edgeproxy.objects import DurableObject


class Counter(DurableObject):
    async def fetch(self, request):
        n = await self.ctx.storage.get("n") or 0
        await self.ctx.storage.put("n", n + 1)
        return PlainTextResponse(str(n + 1))
"""

# An empty body, so wrk sends `Content-Length: 0` with each POST.
ONE_OBJECT_LUA = """\
wrk.method = "POST"
wrk.body = ""
"""

# Request i goes to object "obj-<i mod N>"; the requests are formatted once, in init().
MANY_OBJECTS_LUA = """\
wrk.method = "POST"
wrk.body = ""
local requests = {{}}
local sent = 0
init = function(args)
  for i = 0, {objects} - 1 do
    requests[i] = wrk.format(nil, "/counter?name=obj-" .. i)
  end
end
request = function()
  sent = sent + 1
  return requests[sent % {objects}]
end
"""


def names(objects: int) -> list[str]:
    """The object names the load posts to."""
    return ["one"] if objects == 1 else [f"obj-{i}" for i in range(objects)]


def edgeproxy_counter(bench: Bench, name: str, objects: int) -> Iterator[Load]:
    """`edgeproxy serve` with the counter site; after the runs, killed under load,
    restarted on the same state directory and checked."""
    _counter_site(bench)
    state = bench.tmp / f"{name}.state"
    crash = BackgroundWrk()
    try:
        with bench.edgeproxy(name, COUNTER_RULES, state=state, kill=True) as base:
            load = _load(base, objects)
            yield load
            _crash_load(bench, name, load, crash)
    finally:
        report = crash.join()
    _crashed(load, report)
    with bench.edgeproxy(f"{name}-restart", COUNTER_RULES, state=state) as base:
        verify(base, objects, load.tally)


def workerd_counter(bench: Bench, name: str, objects: int) -> Iterator[Load]:
    """workerd (installed on first use) with the same counter; checked like edgeproxy's.
    Raises workerd.Unavailable when it cannot run here."""
    binary = workerd.install()
    directory = bench.tmp / name
    crash = BackgroundWrk()
    try:
        with bench.workerd(name, binary, directory, kill=True) as base:
            load = _load(base, objects)
            yield load
            _crash_load(bench, name, load, crash)
    finally:
        report = crash.join()
    _crashed(load, report)
    with bench.workerd(f"{name}-restart", binary, directory) as base:
        verify(base, objects, load.tally)


def _crash_load(bench: Bench, name: str, load: Load, crash: BackgroundWrk) -> None:
    """Start one more (unmeasured) run and return KILL_AFTER seconds into it, so that the
    server is killed, by the block this is called in, while requests are in flight."""
    script = bench.tmp / f"{name}-crash.lua"
    script.write_text(load.script + WRK_REPORT)
    crash.start(load.url, CRASH_CONNECTIONS, CRASH_SECONDS, script)
    time.sleep(KILL_AFTER)


def _crashed(load: Load, report: dict[str, Any] | None) -> None:
    if report is None:
        raise BenchError("the load to kill the server under did not run")
    load.tally.add(report, CRASH_CONNECTIONS)
    print(f"  killed (SIGKILL) {KILL_AFTER:g} s into a load, {report['requests']:,} answered")


def _counter_site(bench: Bench) -> None:
    site = bench.tmp / "counter-site"
    if site.exists():
        return
    (site / "functions").mkdir(parents=True)
    (site / "index.html").write_text("<h1>counter</h1>")
    (site / "functions" / "counter.py").write_text(COUNTER_FUNCTION)
    (bench.tmp / "counter.py").write_text(COUNTER_CLASS)


def _load(base: str, objects: int) -> Load:
    tally = Tally()
    ready = functools.partial(prepare, base, objects, tally)
    if objects == 1:
        return Load(f"{base}/counter?name=one", ONE_OBJECT_LUA, ready, tally)
    return Load(f"{base}/counter", MANY_OBJECTS_LUA.format(objects=objects), ready, tally)


def increment(base: str, name: str) -> int:
    """POST to the object `name` on a new connection; the count it answers."""
    url = f"{base}/counter?name={urllib.parse.quote(name)}"
    status, body = http_request("POST", url)
    if status != 200:
        raise BenchError(f"POST {url} answered {status}: {body[:200]!r}")
    return _count(url, body)


def prepare(base: str, objects: int, tally: Tally) -> None:
    """Before loading: an object of its own counts 1, then 2; and each of the load's
    objects is created by one request (it must answer 1), so that the measured runs see
    objects that exist on both servers rather than the cost of creating them."""
    counts = [increment(base, PROBE), increment(base, PROBE)]
    if counts != [1, 2]:
        raise BenchError(f"the {PROBE!r} counter answered {counts}, not [1, 2]")
    for name, count in zip(names(objects), read_back(base, names(objects)), strict=True):
        if count != 1:
            raise BenchError(f"the new object {name!r} answered {count}, not 1")
        tally.acknowledged += 1


def verify(base: str, objects: int, tally: Tally) -> None:
    """On the restarted server: the probe object kept its 2, and the load's objects hold
    between `tally.acknowledged` and `tally.acknowledged + tally.unseen` increments."""
    if (count := increment(base, PROBE)) != 3:
        raise BenchError(f"after the restart the {PROBE!r} counter answered {count}, not 3")
    stored = sum(count - 1 for count in read_back(base, names(objects)))
    low, high = tally.acknowledged, tally.acknowledged + tally.unseen
    verdict = f"{stored:,} increments stored over {objects:,} object(s), {low:,} acknowledged"
    if not low <= stored <= high:
        raise BenchError(f"{verdict}: outside {low:,}..{high:,} (lost or extra writes)")
    print(f"  after SIGKILL and restart: {verdict}, up to {tally.unseen:,} more unseen: ok")


def read_back(base: str, objects: list[str]) -> Iterator[int]:
    """Each object's count + 1 (reading is a POST too), over one keep-alive connection."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        for name in objects:
            target = f"/counter?name={urllib.parse.quote(name)}"
            conn.request("POST", target, body=b"")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise BenchError(f"POST {target} answered {response.status}: {body[:200]!r}")
            yield _count(target, body)
    finally:
        conn.close()


def _count(target: str, body: bytes) -> int:
    try:
        return int(body)
    except ValueError as exc:
        raise BenchError(f"{target} answered {body[:200]!r}, not a count") from exc
