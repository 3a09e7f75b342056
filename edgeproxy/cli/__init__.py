"""The `edgeproxy` command line.

    edgeproxy serve       [--config FILE] [--host H] [--port P] [--state-dir DIR] [--workers N]
    edgeproxy check       [FILE]
    edgeproxy schema
    edgeproxy routes      [--config FILE] [--explain URL] [--method M]
    edgeproxy deploy      DIR --site S [--branch B] [--commit SHA] [--message M]
    edgeproxy deployments --site S
    edgeproxy rollback    DEPLOY_ID --site S
    edgeproxy alias       ALIAS [DEPLOY_ID] --site S [--delete]
    edgeproxy logs        --site S | --route R [--tail]     (DEPLOY_ID --site S: build log)
    edgeproxy purge       URL | --prefix URL | --tag TAG | --all
    edgeproxy objects     list | get | evict | alarm | dead-letters | audit  (see cli/objects.py)

The commands after `routes` talk to a running gateway (`--server`, `--token`). `git-hook`
and `build` are run by git and by the deploy hook, not by people.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeproxy import __version__
from edgeproxy.admin.client import AdminClient
from edgeproxy.cli import objects
from edgeproxy.cli.common import admin_call, admin_options, load_or_report, report_issues, table
from edgeproxy.config.loader import config_json_schema
from edgeproxy.edge.route import load_route_handlers
from edgeproxy.exceptions import BadRequest, ConfigError
from edgeproxy.objects.config import load_namespaces
from edgeproxy.routing.paths import parse_path
from edgeproxy.routing.table import CompiledRoute, RouteTable

DEFAULT_CONFIG = "rules.yaml"
LISTEN_ENV = "EDGEPROXY_LISTEN"


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    from edgeproxy import app, server

    if args.workers > 1 and config.objects.namespaces:
        print(
            f"error: --workers {args.workers} with durable objects configured: every object "
            "must have exactly one live instance, and objects are placed in one process until "
            "multi-process placement lands; run with --workers 1 (the default)",
            file=sys.stderr,
        )
        return 2
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    os.environ[app.CONFIG_ENV] = os.path.abspath(args.config)
    if args.host or args.port is not None:
        # The address actually served, for configs that point at themselves with
        # ${EDGEPROXY_LISTEN} (the shipped rules.yaml does).
        os.environ[LISTEN_ENV] = f"{host}:{port}"
    if args.state_dir:
        os.environ[app.STATE_DIR_ENV] = os.path.abspath(args.state_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server.run(
        host=host,
        port=port,
        workers=args.workers,
        keep_alive=config.server.timeouts.keep_alive,
        shutdown_timeout=config.server.timeouts.shutdown,
        header_timeout=config.server.timeouts.header_read,
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = load_or_report(args.file)
    if config is None:
        return 1
    # Handlers and object classes are code: importing them is part of checking the file.
    issues = []
    try:
        loader, _ = load_route_handlers(config, Path(args.file).absolute())
        loader.close()
    except ConfigError as exc:
        issues += exc.issues
    try:
        load_namespaces(config.objects, Path(args.file).absolute())
    except ConfigError as exc:
        issues += exc.issues
    if issues:
        report_issues(args.file, ConfigError(issues))
        return 1
    print(f"{args.file}: OK")
    print(f"  listen {config.server.listen}, state dir {config.server.state_dir}")
    print(f"  {len(config.origins)} origin(s): {', '.join(config.origins) or '-'}")
    print(f"  {len(config.routes)} route(s)")
    if config.objects.namespaces:
        print(f"  {len(config.objects.namespaces)} object namespace(s)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_json_schema(), indent=2))
    return 0


def describe(route: CompiledRoute) -> list[str]:
    config = route.config
    hosts = ",".join(config.match.host) if config.match.host else "*"
    methods = ",".join(config.match.methods) if config.match.methods else "any"
    if config.proxy is not None:
        action = f"proxy {config.proxy}"
    elif config.redirect is not None:
        action = f"redirect {config.redirect.status} {config.redirect.to}"
    elif config.site is not None:
        action = f"site {config.site}"
    else:
        assert config.respond is not None
        action = f"respond {config.respond.status}"
    return [route.name, hosts, config.match.path, methods, action]


def cmd_routes(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    routes = RouteTable(config.routes)
    if args.explain:
        url = urlsplit(args.explain if "://" in args.explain else f"http://{args.explain}")
        try:
            path = parse_path((url.path or "/").encode())
        except BadRequest as exc:
            print(f"{args.explain}: refused with 400: {exc.detail}")
            return 1
        for line in routes.explain(url.netloc, path, args.method.upper()):
            print(line)
        return 0
    table([["ROUTE", "HOST", "PATH", "METHODS", "ACTION"], *(describe(r) for r in routes.routes)])
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"edgeproxy: {directory} is not a directory", file=sys.stderr)
        return 1

    def work(client: AdminClient) -> int:
        result = client.deploy(
            directory, args.site, branch=args.branch, commit=args.commit, message=args.message
        )
        print(
            f"deployed {result['short_id']} ({result['files']} files) on branch {result['branch']}"
        )
        for warning in result.get("warnings", []):
            print(f"warning: {warning}")
        for name, url in result["urls"].items():
            print(f"  {name:<16}{url}")
        return 0

    return admin_call(args, work)


def cmd_deployments(args: argparse.Namespace) -> int:
    def work(client: AdminClient) -> int:
        listed = client.call("GET", f"/sites/{args.site}/deploys")["deployments"]
        rows = [["ID", "BRANCH", "COMMIT", "CREATED", "FILES", "ALIASES"]]
        rows += [
            [d["short_id"], d["branch"], d["commit"][:10], d["created_at"], str(d["files"]),
             ",".join(d["aliases"])]
            for d in listed
        ]  # fmt: skip
        table(rows)
        return 0

    return admin_call(args, work)


def cmd_rollback(args: argparse.Namespace) -> int:
    def work(client: AdminClient) -> int:
        body = {"deploy_id": args.deploy_id}
        aliases = client.call("POST", f"/sites/{args.site}/rollback", json=body)["aliases"]
        print(f"production -> {aliases['production'][:8]}")
        return 0

    return admin_call(args, work)


def cmd_purge(args: argparse.Namespace) -> int:
    if args.url:
        body: dict[str, object] = {"url": args.url}
    elif args.prefix:
        body = {"prefix": args.prefix}
    elif args.tag:
        body = {"tag": args.tag}
    else:
        body = {"all": True}

    def work(client: AdminClient) -> int:
        purged = client.call("POST", "/cache/purge", json=body)["purged"]
        print(f"purged {purged} stored response(s)")
        return 0

    return admin_call(args, work)


def cmd_alias(args: argparse.Namespace) -> int:
    def work(client: AdminClient) -> int:
        path = f"/sites/{args.site}/aliases/{args.alias}"
        if args.delete:
            client.call("DELETE", path)
            print(f"removed alias {args.alias}")
        else:
            aliases = client.call("PUT", path, json={"deploy_id": args.deploy_id})["aliases"]
            print(f"{args.alias} -> {aliases[args.alias][:8]}")
        return 0

    return admin_call(args, work)


def cmd_logs(args: argparse.Namespace) -> int:
    if args.deploy_id:
        if not args.site:
            print("edgeproxy: a build log needs --site", file=sys.stderr)
            return 2

        def build_log(client: AdminClient) -> int:
            print(client.text(f"/sites/{args.site}/deploys/{args.deploy_id}/log"), end="")
            return 0

        return admin_call(args, build_log)
    if bool(args.site) == bool(args.route):
        print(
            "edgeproxy: give --site S (its functions) or --route R (its handler)", file=sys.stderr
        )
        return 2
    params = {"site": args.site} if args.site else {"route": args.route}

    def handler_logs(client: AdminClient) -> int:
        if not args.tail:
            for entry in client.call("GET", "/logs", params=params)["entries"]:
                print(format_log_entry(entry))
            return 0
        try:
            for entry in client.stream_lines("/logs", {**params, "follow": "1"}):
                print(format_log_entry(json.loads(entry)), flush=True)
        except KeyboardInterrupt:
            pass
        return 0

    return admin_call(args, handler_logs)


def format_log_entry(entry: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry["time"]))
    return (
        f"{when}.{int(entry['time'] % 1 * 1000):03d}Z {entry['request_id']} {entry['handler']} "
        f"{entry['level']}: {entry['message']}"
    )


def cmd_git_hook(args: argparse.Namespace) -> int:
    from edgeproxy.sites.builds import run_hook

    out = sys.stdout.buffer
    return run_hook(Path(args.config), Path(args.state_dir), args.site, sys.stdin, out)


def cmd_build(args: argparse.Namespace) -> int:
    from edgeproxy.sites.builds import run_fetched_build

    return run_fetched_build(
        Path(args.config),
        Path(args.state_dir),
        args.site,
        args.ref,
        args.commit,
        args.build_id,
        sys.stdout.buffer,
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edgeproxy", description="A self-hosted edge gateway.")
    root.add_argument("--version", action="version", version=f"edgeproxy {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="rules file (default: rules.yaml)")
    serve.add_argument("--host", help="address to listen on (default: from server.listen)")
    serve.add_argument("--port", type=int, help="port to listen on (default: from server.listen)")
    serve.add_argument("--state-dir", help="where state is written (default: server.state_dir)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser("check", help="validate a rules file and list every error")
    check.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check)

    schema = commands.add_parser("schema", help="print the JSON Schema of rules.yaml")
    schema.set_defaults(func=cmd_schema)

    routes = commands.add_parser("routes", help="print the compiled route table")
    routes.add_argument("--config", default=DEFAULT_CONFIG)
    routes.add_argument("--explain", metavar="URL", help="show which route wins for URL and why")
    routes.add_argument("--method", default="GET", help="method for --explain (default: GET)")
    routes.set_defaults(func=cmd_routes)

    deploy = commands.add_parser("deploy", help="upload a directory as a new deployment of a site")
    deploy.add_argument("directory")
    deploy.add_argument("--site", required=True)
    deploy.add_argument("--branch", help="branch name (default: the site's production branch)")
    deploy.add_argument("--commit", default="", help="commit SHA to record")
    deploy.add_argument("--message", default="", help="message to record")
    admin_options(deploy)
    deploy.set_defaults(func=cmd_deploy)

    deployments = commands.add_parser("deployments", help="list a site's deployments")
    deployments.add_argument("--site", required=True)
    admin_options(deployments)
    deployments.set_defaults(func=cmd_deployments)

    rollback = commands.add_parser("rollback", help="point production at an earlier deployment")
    rollback.add_argument("deploy_id", metavar="DEPLOY_ID")
    rollback.add_argument("--site", required=True)
    admin_options(rollback)
    rollback.set_defaults(func=cmd_rollback)

    alias = commands.add_parser("alias", help="point an alias at a deployment, or remove it")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("deploy_id", metavar="DEPLOY_ID", nargs="?")
    alias.add_argument("--site", required=True)
    alias.add_argument("--delete", action="store_true", help="remove the alias")
    admin_options(alias)
    alias.set_defaults(func=cmd_alias)

    logs = commands.add_parser(
        "logs", help="edge handler output of a site or route (or a deployment's build log)"
    )
    logs.add_argument(
        "deploy_id", metavar="DEPLOY_ID", nargs="?", help="print this deployment's build log"
    )
    logs.add_argument("--site", help="the site whose functions' output to print")
    logs.add_argument("--route", help="the route whose handler's output to print")
    logs.add_argument("--tail", action="store_true", help="keep printing new output (Ctrl-C)")
    admin_options(logs)
    logs.set_defaults(func=cmd_logs)

    purge = commands.add_parser("purge", help="drop cached responses")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("url", nargs="?", help="one URL, e.g. http://example.com/a?b=1")
    which.add_argument("--prefix", help="every URL starting with this")
    which.add_argument("--tag", help="every response whose Cache-Tag names this tag")
    which.add_argument("--all", action="store_true", help="everything")
    admin_options(purge)
    purge.set_defaults(func=cmd_purge)

    objects.add_commands(commands)

    # Not listed in --help (no help=): run by the server, not by people.
    hook = commands.add_parser("git-hook")
    hook.add_argument("--config", required=True)
    hook.add_argument("--state-dir", required=True)
    hook.add_argument("--site", required=True)
    hook.set_defaults(func=cmd_git_hook)

    build = commands.add_parser("build")
    build.add_argument("--config", required=True)
    build.add_argument("--state-dir", required=True)
    build.add_argument("--site", required=True)
    build.add_argument("--ref", required=True)
    build.add_argument("--commit", default="")
    build.add_argument("--build-id", required=True)
    build.set_defaults(func=cmd_build)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
