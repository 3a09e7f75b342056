"""Run the HTTP caching conformance suite (cache-tests.fyi) against edgeproxy.

    python bench/cache_conformance.py [--json out.json]

Fetches the suite from the npm registry (package `http-cache-tests`), starts its origin
server on 127.0.0.1:8000 (the suite's fixed port), starts `edgeproxy serve` with one cached
`proxy` route to it, runs the suite's client through edgeproxy, and prints the number of
tests passed next to the results the suite ships for nginx, Varnish, Squid, Apache, Apache
Traffic Server, Fastly and nuster. Needs node and npm. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "http-cache-tests@0.4.5"
SUITE_PORT = 8000
RULES = """\
server: {access_log: false}
origins:
  tests:
    targets: ["http://127.0.0.1:8000"]
    passive_health: {max_fails: 0}
routes:
  - match: {path: /}
    proxy: tests
    preserve_host: true
    cache: {}
"""
OTHERS = ["squid", "apache", "trafficserver", "varnish", "nginx", "fastly", "nuster"]


def wait_for(url: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds:g}s")


def passed(results: dict[str, object]) -> int:
    return sum(1 for value in results.values() if value is True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write edgeproxy's per-test results here")
    parser.add_argument("--log", help="copy edgeproxy's stderr (upstream errors) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cache-tests-") as scratch:
        tmp = Path(scratch)
        subprocess.run(["npm", "pack", PACKAGE], cwd=tmp, check=True, capture_output=True)
        tarball = next(tmp.glob("http-cache-tests-*.tgz"))
        subprocess.run(["tar", "xzf", tarball.name], cwd=tmp, check=True)
        suite = tmp / "package"
        subprocess.run(
            ["npm", "install", "--omit=dev", "--no-audit", "--no-fund"],
            cwd=suite, check=True, capture_output=True,
        )  # fmt: skip
        config = tmp / "rules.yaml"
        config.write_text(RULES)
        edge_port = 8090
        server = subprocess.Popen(
            ["node", "server/server.mjs"], cwd=suite, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "npm_package_config_port": str(SUITE_PORT),
                 "npm_package_config_protocol": "http",
                 "npm_package_config_pidfile": str(tmp / "server.pid")},
        )  # fmt: skip
        edge = subprocess.Popen(
            [sys.executable, "-m", "edgeproxy", "serve", "--config", str(config),
             "--port", str(edge_port), "--state-dir", str(tmp / "state")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp / "edge.log").open("wb"),
        )  # fmt: skip
        try:
            wait_for(f"http://127.0.0.1:{SUITE_PORT}/")
            wait_for(f"http://127.0.0.1:{edge_port}/_edge/health")
            client = subprocess.run(
                ["npm", "run", "--silent", "cli", f"--base=http://127.0.0.1:{edge_port}"],
                cwd=suite, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            results = json.loads(client.stdout)
        finally:
            for process in (edge, server):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        if args.log:
            shutil.copyfile(tmp / "edge.log", args.log)
        rows = [("edgeproxy", passed(results), len(results))]
        for name in OTHERS:
            theirs = json.loads((suite / "results" / f"{name}.json").read_text())
            rows.append((name, passed(theirs), len(theirs)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    for name, count, total in sorted(rows, key=lambda row: -row[1]):
        print(f"{name:<14} {count:>4} / {total} passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
