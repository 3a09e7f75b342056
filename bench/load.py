"""Loading a URL with wrk, and accounting for where the CPU time went meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
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
