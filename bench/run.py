"""Reproducible throughput and latency benchmark for edgeproxy.

    python bench/run.py [--duration 10] [--connections 64] [--scenarios proxy,...] [--rounds N]
                        [--json FILE]

An nginx origin (C, so never the bottleneck) serves a 1 KiB file on a loopback port. Each
scenario (bench/scenarios.py) starts one server pinned to CPU 0, loads it with wrk pinned
to CPU 1 (next to nginx) at 64 and then 32 connections, and stops it. The `floor` scenario,
a raw ASGI app on uvicorn, always runs first: every other figure is reported as a multiple
of it. With `--rounds N` the whole sequence runs N times; each ratio is taken within its
round, and targets are judged on the median over the rounds (the host's speed drifts over
minutes). bench/README.md describes the method and the targets.

Exit status: 0 when every scenario was measured cleanly; 1 when one failed to start or a
run saw errors (or, with --check, a target was missed); 2 when the origin did not start.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import workerd
from bench.load import (
    WRK_REPORT,
    Load,
    cpu_sample,
    cpu_usage,
    disk_flushes,
    disk_of,
    filesystem_of,
    wrk,
)
from bench.scenarios import DEFAULT, SCENARIOS, Bench, Scenario
from bench.servers import REPO, BenchError, http_get, nginx_origin, origin_counters

# Throughput targets as a share of the floor, by scenario (from the issues), and the
# proxy's latency target.
TARGET_FLOOR_RATIOS = {"proxy": 0.40, "static-1k": 0.60, "cache-hit": 0.70, "function": 0.60}
TARGET_P99_MS = 5.0
# Scenarios measured against workerd's run of the same load: scenario -> (the workerd
# scenario, always run with it, and the target as a multiple of its requests/s).
TARGET_WORKERD_RATIOS = {
    "counter-1": ("workerd-counter-1", 1.0),
    "counter-1000": ("workerd-counter-1000", 1.5),
}
# Above this percent of a CPU used by other processes during a run, its figures are flagged.
OTHER_LOAD_LIMIT = 10.0


@dataclass
class Run:
    scenario: str
    label: str
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: dict[str, int]
    cpu: dict[str, float]  # percent busy: cpu0, cpu1, and `other` (see load.cpu_usage)
    # What nginx saw during the run: a pooling proxy opens about one upstream connection
    # per client connection, once, and then none.
    origin_connections: int
    origin_requests: int
    # Cache flushes the scratch directory's disk completed during the run (fsync on a disk
    # with a write-back cache), whoever asked for them; None where they are not counted.
    disk_flushes: int | None = None
    ratio: float | None = None
    round: int = 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def key(self) -> str:
        return f"{self.scenario}@{self.connections}"

    @property
    def label_in_round(self) -> str:
        return self.key if self.round == 1 else f"{self.key} #{self.round}"


def measure(
    bench: Bench,
    entry: Scenario,
    target: str | Load,
    args: argparse.Namespace,
    script: Path,
    round_number: int,
) -> list[Run]:
    load = target if isinstance(target, Load) else Load(target)
    url = load.url
    if load.script:
        script = bench.tmp / f"{entry.name}.lua"
        script.write_text(load.script + WRK_REPORT)
    if load.probe is not None:
        load.probe()
    else:
        status, body = http_get(url)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}, not 200: {body[:200]!r}")
    if args.warmup:
        load.tally.add(wrk(url, args.passes[0], args.warmup, script), args.passes[0])
    disk = disk_of(bench.tmp)
    runs = []
    for connections in args.passes:
        accepts, served = origin_counters(bench.origin)
        flushes = disk_flushes(disk)
        before = cpu_sample()
        report = wrk(url, connections, args.duration, script)
        load.tally.add(report, connections)
        cpu = cpu_usage(before, cpu_sample())
        flushes_after = disk_flushes(disk)
        accepts_after, served_after = origin_counters(bench.origin)
        run = Run(
            scenario=entry.name,
            label=entry.label,
            connections=connections,
            requests=report["requests"],
            rps=report["requests"] / (report["duration_us"] / 1e6),
            p50_ms=report["p50_us"] / 1000,
            p90_ms=report["p90_us"] / 1000,
            p99_ms=report["p99_us"] / 1000,
            p999_ms=report["p999_us"] / 1000,
            max_ms=report["max_us"] / 1000,
            errors=report["errors"],
            cpu=cpu,
            # The counters query before the run is one connection and request too.
            origin_connections=accepts_after - accepts - 1,
            origin_requests=served_after - served - 1,
            disk_flushes=None
            if flushes is None or flushes_after is None
            else flushes_after - flushes,
            round=round_number,
        )
        runs.append(run)
        print(f"  {connections:>3} conns: {run.rps:,.0f} req/s  p99 {run.p99_ms:.2f} ms")
    return runs


@dataclass
class Report:
    started: str
    machine: dict[str, str]
    params: dict[str, object]
    idle_before: dict[str, float]
    runs: list[Run] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    # Scenarios that cannot run on this machine (workerd.Unavailable), with why.
    skipped: dict[str, str] = field(default_factory=dict)
    targets: list[dict[str, object]] = field(default_factory=list)
    # Per scenario@connections measured against workerd: its requests/s over workerd's
    # (the median over rounds).
    workerd_ratios: dict[str, float] = field(default_factory=dict)
    rounds: int = 1

    def add_ratios(self) -> None:
        floor = {
            (run.round, run.connections): run.rps for run in self.runs if run.scenario == "floor"
        }
        for run in self.runs:
            if (run.round, run.connections) in floor:
                run.ratio = run.rps / floor[run.round, run.connections]
        runs = {(run.round, run.key): run for run in self.runs}
        per_round: dict[str, list[float]] = {}
        for name, (reference, _target) in TARGET_WORKERD_RATIOS.items():
            for run in self.runs:
                theirs = runs.get((run.round, f"{reference}@{run.connections}"))
                if run.scenario == name and theirs is not None:
                    per_round.setdefault(run.key, []).append(run.rps / theirs.rps)
        self.workerd_ratios = {key: statistics.median(ratios) for key, ratios in per_round.items()}

    def median(self, key: str, attribute: str) -> float | None:
        """The median of a figure of `key` (scenario@connections) over the rounds."""
        values = [getattr(run, attribute) for run in self.runs if run.key == key]
        values = [value for value in values if value is not None]
        return statistics.median(values) if values else None

    def _over_rounds(self, value: str) -> str:
        return value if self.rounds == 1 else f"{value} (median of {self.rounds} rounds)"

    def check_targets(self, connections: int, latency_connections: int) -> None:
        keys = {run.key for run in self.runs}
        for name, target in TARGET_FLOOR_RATIOS.items():
            ratio = self.median(f"{name}@{connections}", "ratio")
            if ratio is not None:
                self.targets.append(
                    {
                        "target": f"{name} at {connections} conns >= {target:.2f} x floor",
                        "value": self._over_rounds(f"{ratio:.2f} x"),
                        "met": ratio >= target,
                    }
                )
        for name, (reference, target) in TARGET_WORKERD_RATIOS.items():
            key = f"{name}@{connections}"
            if key not in keys:
                continue
            entry: dict[str, object] = {
                "target": f"{name} at {connections} conns >= {target:.2f} x {reference}"
            }
            workerd_ratio = self.workerd_ratios.get(key)
            if workerd_ratio is not None:
                entry.update(
                    value=self._over_rounds(f"{workerd_ratio:.2f} x"),
                    met=workerd_ratio >= target,
                )
            else:
                # workerd could not run here, or failed: reported, not judged.
                why = self.skipped.get(reference) or self.failures.get(reference) or "no run"
                entry.update(value="not measured", met=None, reason=why.splitlines()[0])
            self.targets.append(entry)
        p99 = self.median(f"proxy@{latency_connections}", "p99_ms")
        if p99 is not None:
            self.targets.append(
                {
                    "target": f"proxy p99 at {latency_connections} conns < {TARGET_P99_MS:g} ms",
                    "value": self._over_rounds(f"{p99:.2f} ms"),
                    "met": p99 < TARGET_P99_MS,
                }
            )


def print_report(report: Report) -> None:
    machine = report.machine
    print(
        f"\n{report.started}  {machine['cpus']} cpus ({machine['cpu_model']})  "
        f"edgeproxy {machine['edgeproxy_rev']}"
    )
    header = (
        f"{'scenario':<28}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
        f"{'x floor':>9}{'errors':>8}{'cpu0 %':>8}{'cpu1 %':>8}{'other %':>9}{'origin conns':>14}"
        f"{'flush/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for run in report.runs:
        ratio = f"{run.ratio:.2f}" if run.ratio is not None else "-"
        flushes = (
            "-" if run.disk_flushes is None else f"{run.disk_flushes / max(run.requests, 1):.2f}"
        )
        print(
            f"{run.label_in_round.split('@')[0]:<28}{run.connections:>6}{run.rps:>10,.0f}{run.p50_ms:>9.2f}"
            f"{run.p99_ms:>9.2f}{run.p999_ms:>10.2f}{ratio:>9}{run.error_count:>8}"
            f"{run.cpu['cpu0']:>8.0f}{run.cpu['cpu1']:>8.0f}{run.cpu['other']:>9.0f}"
            f"{run.origin_connections:>14,}{flushes:>11}"
        )
    print()
    for run in report.runs:
        ratio = f" = {run.ratio:.2f} x floor" if run.ratio is not None else ""
        print(
            f"{run.label_in_round}: {run.rps:,.0f} req/s p50 {run.p50_ms:.2f} ms "
            f"p99 {run.p99_ms:.2f} ms{ratio}"
        )
    if report.rounds > 1:
        print(f"\nmedians over {report.rounds} rounds:")
        for key in dict.fromkeys(run.key for run in report.runs):
            median_rps = report.median(key, "rps") or 0.0
            median_ratio = report.median(key, "ratio")
            share = f" = {median_ratio:.2f} x floor" if median_ratio is not None else ""
            print(f"  {key}: {median_rps:,.0f} req/s{share}")
    for key, times in report.workerd_ratios.items():
        print(f"{key}: {times:.2f} x workerd")
    for name, reason in report.failures.items():
        print(f"\nFAILED {name}: {reason}")
    for name, reason in report.skipped.items():
        print(f"\nSKIPPED {name}: {reason}")
    if report.targets:
        print("\ntargets:")
        for target in report.targets:
            if target["met"] is None:
                verdict = f"NOT MEASURED ({target['reason']}); compare with the floor instead"
            else:
                verdict = "met" if target["met"] else "MISSED"
            print(f"  {target['target']}: {target['value']}  {verdict}")
    noisy = [run.label_in_round for run in report.runs if run.cpu["other"] > OTHER_LOAD_LIMIT]
    if noisy:
        print(
            f"\nWARNING other processes used over {OTHER_LOAD_LIMIT:g}% of a CPU during "
            f"{', '.join(noisy)}: those figures are skewed; rerun on an idle machine"
        )
    errored = [run.label_in_round for run in report.runs if run.error_count]
    if errored:
        print(f"\nruns with wrk errors (their figures mean nothing): {', '.join(errored)}")


def first_line(argv: list[str]) -> str:
    """The first line a version command prints (nginx and wrk print to stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine() -> dict[str, str]:
    import aiohttp
    import uvicorn

    with open("/proc/cpuinfo") as info:
        models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": models[0] if models else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "aiohttp": aiohttp.__version__,
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "workerd": f"{workerd.VERSION} (npm, pinned)",
        "edgeproxy_rev": first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }


def idle_check(seconds: float = 1.0) -> dict[str, float]:
    """CPU use before anything starts; other load skews every figure, so say so."""
    before = cpu_sample()
    time.sleep(seconds)
    usage = cpu_usage(before, cpu_sample())
    if usage["other"] > OTHER_LOAD_LIMIT:
        print(
            f"bench: WARNING the machine is not idle: other processes use {usage['other']:.0f}% "
            "of a CPU; figures will be low and noisy"
        )
    return usage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark edgeproxy against a raw-ASGI floor, with an nginx origin."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first (2)")
    parser.add_argument("--connections", type=int, default=64, help="throughput pass (64)")
    parser.add_argument(
        "--latency-connections", type=int, default=32, help="second pass, for p99 (32)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}; floor always runs",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole sequence this many times; targets use the medians (1)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if (
        min(args.duration, args.rounds, args.connections, args.latency_connections) < 1
        or args.warmup < 0
    ):
        parser.error("--duration, --rounds and connection counts must be >= 1, --warmup >= 0")
    # Each scenario measured against workerd runs right after it, in the same run.
    paired = []
    for name in names:
        paired.append(name)
        if name in TARGET_WORKERD_RATIOS:
            paired.append(TARGET_WORKERD_RATIOS[name][0])
    args.scenarios = ["floor", *(name for name in dict.fromkeys(paired) if name != "floor")]
    args.passes = list(dict.fromkeys([args.connections, args.latency_connections]))
    return args


def preflight() -> None:
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: not on PATH: {', '.join(missing)}")
    if not {0, 1} <= os.sched_getaffinity(0):
        sys.exit("bench: needs CPUs 0 and 1 (server on 0, wrk and nginx on 1)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight()
    # SIGTERM to the harness must still run the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = Report(
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        params={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.passes,
            "method": "wrk -t1 --latency and nginx on CPU 1; server under test on CPU 0",
        },
        idle_before=idle_check(),
        rounds=args.rounds,
    )
    with (
        tempfile.TemporaryDirectory(prefix="edgeproxy-bench-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(scratch)
        report.params["scratch_fs"] = filesystem_of(tmp)
        report.params["scratch_disk"] = disk_of(tmp) or "none"
        if report.params["scratch_fs"] in ("tmpfs", "ramfs"):
            print(
                f"bench: WARNING {tmp} is on {report.params['scratch_fs']}: fsync there reaches "
                "no disk, so the counter figures are not those of durable storage"
            )
        script = tmp / "report.lua"
        script.write_text(WRK_REPORT)
        try:
            origin = stack.enter_context(nginx_origin(tmp))
        except BenchError as exc:
            print(f"bench: the nginx origin did not start: {exc}", file=sys.stderr)
            return 2
        for round_number in range(1, args.rounds + 1):
            bench = Bench(tmp, origin)
            if args.rounds > 1:
                print(f"round {round_number} of {args.rounds}", flush=True)
                # Each round sets its scenarios up afresh (sites, object state).
                bench = Bench(tmp / f"round-{round_number}", origin)
                bench.tmp.mkdir()
            for name in args.scenarios:
                if name in report.skipped or name in report.failures:
                    continue
                entry = SCENARIOS[name]
                print(f"{name}: {entry.label}", flush=True)
                try:
                    with entry.start(bench) as target:
                        runs = measure(bench, entry, target, args, script, round_number)
                        report.runs.extend(runs)
                except workerd.Unavailable as exc:
                    report.skipped[name] = str(exc)
                    print(f"  SKIPPED, workerd cannot run here: {exc}", flush=True)
                except BenchError as exc:
                    report.failures[name] = str(exc)
                    print(f"  FAILED: {str(exc).splitlines()[0]}", flush=True)

    report.add_ratios()
    report.check_targets(args.connections, args.latency_connections)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
        print(f"\nwrote {args.json}")
    errored = any(run.error_count for run in report.runs)
    # A target against workerd where workerd cannot run is reported, not failed.
    missed = args.check and any(target["met"] is False for target in report.targets)
    return 1 if report.failures or errored or missed else 0


if __name__ == "__main__":
    sys.exit(main())
