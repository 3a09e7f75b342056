"""Cloudflare's runtime, workerd, as the reference for the durable-object counter.

The npm package `workerd` ships the binary in a per-platform optional dependency
(`@cloudflare/workerd-linux-64`). `install()` puts a pinned version into `bench/.workerd/`
(git-ignored) with npm, once, and returns the binary; `config()` writes a capnp config with
the same counter the edgeproxy scenarios run, its Durable Objects stored on local disk.

workerd's storage for `localDisk` is one SQLite file per object in WAL mode; every
implicit transaction (one `put` here) is fsynced before the response leaves the object
(its output gate), so both sides acknowledge a count only once it is on disk.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.servers import REPO, BenchError

VERSION = "1.20261117.1"
# The newest date this binary accepts is its release date (2026-11-17).
COMPATIBILITY_DATE = "2026-11-01"
CACHE = REPO / "bench" / ".workerd"
# Set to a workerd binary to skip the npm install (e.g. on a machine without the registry).
BINARY_ENV = "EDGEPROXY_BENCH_WORKERD"
INSTALL_TIMEOUT = 300
PLATFORM_PACKAGES = {"x86_64": "workerd-linux-64", "aarch64": "workerd-linux-arm64"}


class Unavailable(BenchError):
    """workerd cannot run on this machine (no npm, no binary for it, or it does not start);
    the comparison is skipped, not failed."""


WORKER_JS = """\
export class Counter {
  constructor(state, env) {
    this.state = state;
  }

  async fetch(request) {
    let n = (await this.state.storage.get("n")) || 0;
    await this.state.storage.put("n", n + 1);
    return new Response(String(n + 1));
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/counter") {
      const name = url.searchParams.get("name") || "one";
      return env.COUNTER.get(env.COUNTER.idFromName(name)).fetch(request);
    }
    // The harness waits for 200 here before loading.
    return url.pathname === "/" ? new Response("ok") : new Response("not found", { status: 404 });
  },
};
"""

CONFIG_CAPNP = """\
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .counterWorker),
    (name = "do-storage", disk = (path = "{storage}", writable = true)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "main")],
);

const counterWorker :Workerd.Worker = (
  modules = [(name = "worker.js", esModule = embed "worker.js")],
  compatibilityDate = "{date}",
  bindings = [(name = "COUNTER", durableObjectNamespace = "Counter")],
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "edgeproxy-bench-counter", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
);
"""


def install(cache: Path = CACHE) -> Path:
    """The workerd binary: $EDGEPROXY_BENCH_WORKERD, or VERSION installed with npm into
    `cache` (once). Raises Unavailable when there is none that runs here."""
    if os.environ.get(BINARY_ENV):
        binary = Path(os.environ[BINARY_ENV])
    else:
        package = PLATFORM_PACKAGES.get(platform.machine())
        if platform.system() != "Linux" or package is None:
            raise Unavailable(
                f"no workerd package for {platform.system()} {platform.machine()} in this harness"
            )
        prefix = cache / VERSION
        binary = prefix / "node_modules" / "@cloudflare" / package / "bin" / "workerd"
        if not binary.exists():
            npm_install(prefix)
        if not binary.exists():
            raise Unavailable(f"npm installed workerd@{VERSION} but {binary} is missing")
    found = version(binary)
    if found is None:
        raise Unavailable(f"{binary} does not run here (`workerd --version` failed)")
    return binary


def npm_install(prefix: Path) -> None:
    if shutil.which("npm") is None:
        raise Unavailable("npm is not on PATH, so workerd cannot be installed")
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"  installing workerd@{VERSION} with npm into {prefix}", flush=True)
    # The package's postinstall only checks the optional dependency that holds the binary;
    # the harness runs that binary directly, so no install script is needed.
    argv = [
        "npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
        "--ignore-scripts", f"workerd@{VERSION}",
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"npm install workerd@{VERSION} took over {INSTALL_TIMEOUT} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-10:]
        raise Unavailable(
            f"npm install workerd@{VERSION} exited {done.returncode}:\n" + "\n".join(output)
        )


def version(binary: Path) -> str | None:
    """What `workerd --version` prints ("workerd 2026-11-17"), or None if it does not run."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def config(directory: Path, port: int) -> Path:
    """Write worker.js and config.capnp into `directory`, objects stored in
    `directory/storage`; return the config's path. Writing it again over the same directory
    keeps the stored objects (that is how the harness restarts workerd)."""
    storage = directory / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    (directory / "worker.js").write_text(WORKER_JS)
    path = directory / "config.capnp"
    path.write_text(CONFIG_CAPNP.format(storage=storage, port=port, date=COMPATIBILITY_DATE))
    return path
