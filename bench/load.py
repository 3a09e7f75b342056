"""Loading a URL with wrk, and accounting for where the CPU time (and the disk's cache
flushes) went meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import LOAD_CPU, RUNNING, BenchError

WRK_SOCKET_TIMEOUT = "2s"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# wrk calls done() once at the end; latencies are integer microseconds, finer than the
# two-decimal milliseconds of its --latency text.
WRK_REPORT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Tally:
    """Requests wrk saw answered over every run of a scenario (warm-up included), and how
    many more the server may have handled unseen: one in flight per connection when a run
    stopped (or the server died), and any that timed out. A stateful scenario checks what
    it stored against it."""

    acknowledged: int = 0
    unseen: int = 0

    def add(self, report: dict[str, Any], connections: int) -> None:
        self.acknowledged += report["requests"]
        # Connect, read and write errors are requests that never reached a live server.
        self.unseen += connections + report["errors"]["timeout"]


@dataclass
class Load:
    """What a scenario yields when a plain GET of a URL is not enough: `script` is Lua run
    by wrk before WRK_REPORT (e.g. setting `wrk.method` or defining `request()`), `probe`
    replaces the GET-answers-200 check before loading (it raises BenchError), and the
    `tally` of answered requests is kept for the scenario to check afterwards."""

    url: str
    script: str = ""
    probe: Callable[[], None] | None = None
    tally: Tally = field(default_factory=Tally)


def wrk(url: str, connections: int, duration: int, script: Path) -> dict[str, Any]:
    """One wrk run (one thread, pinned to LOAD_CPU); the `done()` report of WRK_REPORT.
    wrk counts responses with status >= 400 under errors.status."""
    argv = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
        "--timeout", WRK_SOCKET_TIMEOUT, "--latency", "-s", str(script), url,
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish a {duration} s run within {duration + 30} s") from exc
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            report: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return report
    raise BenchError(f"wrk exited {done.returncode} without a report:\n{done.stdout}{done.stderr}")


class BackgroundWrk:
    """One wrk run in a thread, for a load during which something happens (a server is
    killed). `join()` waits for it, at most the run's length plus wrk's own timeout."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._report: dict[str, Any] | None = None
        self._error: BenchError | None = None

    def start(self, url: str, connections: int, duration: int, script: Path) -> None:
        def run() -> None:
            try:
                self._report = wrk(url, connections, duration, script)
            except BenchError as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="wrk", daemon=True)
        self._thread.start()

    def join(self) -> dict[str, Any] | None:
        """The run's report; None if it was never started. Raises what wrk raised."""
        if self._thread is None:
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._report


@dataclass(frozen=True)
class CpuSample:
    # Per CPU: (ticks busy, ticks busy in processes, ticks in all) since boot.
    cpus: dict[str, tuple[int, int, int]]
    ours: float  # CPU seconds used by the running servers and by finished children (wrk)
    wall: float


def cpu_sample() -> CpuSample:
    cpus = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
                total = user + nice + system + idle + iowait + irq + softirq + steal
                cpus[name] = (total - idle - iowait, user + nice + system, total)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = process_cpu_seconds(RUNNING) + children.ru_utime + children.ru_stime
    return CpuSample(cpus, ours, time.monotonic())


def disk_of(path: Path) -> str | None:
    """The name of the disk (as in /proc/diskstats) that holds `path`, or None when its
    filesystem names no block device (tmpfs, overlay, btrfs): flushes go uncounted there."""
    dev = path.stat().st_dev
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not node.exists():
        return None
    node = node.resolve()
    # The kernel counts flushes on the whole disk, not on its partitions.
    return node.parent.name if (node / "partition").exists() else node.name


def filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` is on ("ext4", "tmpfs", ...), from the longest
    mount point above it."""
    path = path.resolve()
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _device, point, fstype, *_ = line.split()
            if path.is_relative_to(point) and len(point) >= len(best):
                best, kind = point, fstype
    return kind


def disk_flushes(disk: str | None) -> int | None:
    """Cache flushes the disk has completed since boot (what fsync costs on a disk with a
    write-back cache); None for no disk, or on kernels older than 5.5, which do not count
    them."""
    if disk is None:
        return None
    with open("/proc/diskstats") as stats:
        for line in stats:
            fields = line.split()
            if fields[2] == disk:
                return int(fields[18]) if len(fields) >= 20 else None
    return None


def process_cpu_seconds(pids: Iterable[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            # Fields after the parenthesised command name start at field 3 (state);
            # utime and stime are fields 14 and 15.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Percent busy of each CPU between two samples, and `other`: the percent of one CPU
    that processes outside the benchmark used meanwhile. Interrupt time is left out of
    `other` because loopback traffic is charged there rather than to a process."""
    usage = {}
    in_processes = 0
    for name, (busy, procs, total) in after.cpus.items():
        busy0, procs0, total0 = before.cpus.get(name, (0, 0, 0))
        usage[name] = round(100 * (busy - busy0) / max(total - total0, 1), 1)
        in_processes += procs - procs0
    others = in_processes / CLOCK_TICKS - (after.ours - before.ours)
    usage["other"] = round(max(0.0, 100 * others / (after.wall - before.wall)), 1)
    return usage
