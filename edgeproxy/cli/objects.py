"""`edgeproxy objects ...`: inspect and operate durable objects.

    edgeproxy objects list          [--namespace N] [--jurisdiction J]
    edgeproxy objects get           ID
    edgeproxy objects evict         ID
    edgeproxy objects alarm         ID --run-now
    edgeproxy objects dead-letters  [--namespace N] [--replay ID]
    edgeproxy objects audit         [--config FILE] [--state-dir DIR]

`list`, `get` and `dead-letters` ask the running gateway, or with `--offline` read the shard
files themselves (`--config`, `--state-dir`); `evict` and `alarm` need the running gateway;
`audit` always reads the files and exits 1 when any object is stored outside its
jurisdiction.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edgeproxy.admin.client import AdminClient
from edgeproxy.admin.objects import detail_json, record_json
from edgeproxy.cli.common import admin_call, admin_options, load_or_report, table
from edgeproxy.exceptions import ObjectError
from edgeproxy.objects import ObjectSettings, ObjectStore, audit
from edgeproxy.objects.config import object_settings
from edgeproxy.runtime import resolve_state_dir

DEFAULT_CONFIG = "rules.yaml"
T = TypeVar("T")


def _settings(args: argparse.Namespace) -> ObjectSettings | None:
    config = load_or_report(args.config)
    if config is None:
        return None
    state_dir = resolve_state_dir(config, Path(args.config).absolute(), args.state_dir)
    return object_settings(config.objects, state_dir)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _print_list(records: list[dict[str, Any]]) -> None:
    rows = [["ID", "NAME", "NAMESPACE", "JURISDICTION", "KEYS", "BYTES", "SHARD"]]
    rows += [
        [r["id"], r["name"] or "-", f"{r['binding']}@{r['scope']}", r["jurisdiction"],
         str(r["keys"]), str(r["bytes"]), Path(r["shard"]).name]
        for r in records
    ]  # fmt: skip
    table(rows)


def _print_detail(detail: dict[str, Any]) -> None:
    print(f"id            {detail['id']}")
    print(f"name          {detail['name'] or '-'}")
    print(f"namespace     {detail['binding']}@{detail['scope']}")
    print(f"jurisdiction  {detail['jurisdiction']}")
    print(f"shard         {detail['shard']}")
    print(f"alarm         {_when(detail['alarm'])}")
    print(f"keys          {detail['keys']} ({detail['bytes']} bytes)")
    for key, value in detail["values"].items():
        print(f"  {key} = {json.dumps(value)}")


def _offline(args: argparse.Namespace, read: Callable[[ObjectStore], T]) -> T | None:
    """`read` the shard files themselves (`--offline`); None once it has said why not."""
    settings = _settings(args)
    if settings is None:
        return None
    try:
        return read(ObjectStore(settings))
    except ObjectError as exc:
        print(f"edgeproxy: {exc}", file=sys.stderr)
        return None


def cmd_list(args: argparse.Namespace) -> int:
    if args.offline:
        records = _offline(
            args, lambda store: store.list_objects(args.namespace, args.jurisdiction)
        )
        if records is None:
            return 1
        _print_list([record_json(record) for record in records])
        return 0

    def work(client: AdminClient) -> int:
        query = {"namespace": args.namespace or "", "jurisdiction": args.jurisdiction or ""}
        _print_list(client.call("GET", "/objects", params=query)["objects"])
        return 0

    return admin_call(args, work)


def cmd_get(args: argparse.Namespace) -> int:
    if args.offline:
        found = _offline(args, lambda store: store.get_object(args.id))
        if found is None:
            return 1
        _print_detail(detail_json(found))
        return 0

    def work(client: AdminClient) -> int:
        _print_detail(client.call("GET", f"/objects/{args.id}"))
        return 0

    return admin_call(args, work)


def cmd_evict(args: argparse.Namespace) -> int:
    def work(client: AdminClient) -> int:
        evicted = client.call("POST", f"/objects/{args.id}/evict")["evicted"]
        print("evicted" if evicted else "not in memory (nothing to evict)")
        return 0

    return admin_call(args, work)


def cmd_alarm(args: argparse.Namespace) -> int:
    if not args.run_now:
        print("edgeproxy: say --run-now to run the object's alarm now", file=sys.stderr)
        return 2

    def work(client: AdminClient) -> int:
        client.call("POST", f"/objects/{args.id}/alarm")
        print("alarm ran")
        return 0

    return admin_call(args, work)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    def show(letters: list[dict[str, Any]]) -> None:
        rows = [["ID", "NAMESPACE", "JURISDICTION", "SCHEDULED", "FAILED", "RETRIES", "ERROR"]]
        rows += [
            [d["id"], f"{d['binding']}@{d['scope']}", d["jurisdiction"] or "default",
             _when(d["scheduled"]), _when(d["failed_at"]), str(d["retries"]), d["error"][:60]]
            for d in letters
        ]  # fmt: skip
        table(rows)

    if args.offline:
        letters = _offline(args, lambda store: store.dead_letters(args.namespace))
        if letters is None:
            return 1
        show([dataclasses.asdict(letter) for letter in letters])
        return 0

    def work(client: AdminClient) -> int:
        if args.replay:
            replayed = client.call("POST", f"/objects/{args.replay}/replay")["replayed"]
            print(f"replayed {replayed} alarm(s)")
            return 0
        query = {"namespace": args.namespace or ""}
        show(client.call("GET", "/objects/dead-letters", params=query)["dead_letters"])
        return 0

    return admin_call(args, work)


def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 1
    if not settings.state_dir.is_dir():
        # A mistyped path must not pass as a clean audit.
        print(f"edgeproxy: no state directory at {settings.state_dir}", file=sys.stderr)
        return 1
    try:
        report = audit(settings)
    except ObjectError as exc:
        print(f"edgeproxy: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    objects = commands.add_parser("objects", help="inspect and operate durable objects")
    sub = objects.add_subparsers(dest="objects_command", required=True, metavar="SUBCOMMAND")

    def offline_options(command: argparse.ArgumentParser, *, flag: bool = True) -> None:
        if flag:
            command.add_argument(
                "--offline", action="store_true", help="read the shard files, not the server"
            )
        command.add_argument("--config", default=DEFAULT_CONFIG)
        command.add_argument("--state-dir", help="state dir (default: server.state_dir)")

    listing = sub.add_parser("list", help="stored objects: IDs, names, sizes, shards")
    listing.add_argument("--namespace", help="only this binding, e.g. COUNTER")
    listing.add_argument("--jurisdiction", help="only this jurisdiction (or 'default')")
    offline_options(listing)
    admin_options(listing)
    listing.set_defaults(func=cmd_list)

    get = sub.add_parser("get", help="one object's keys and values")
    get.add_argument("id", metavar="ID")
    offline_options(get)
    admin_options(get)
    get.set_defaults(func=cmd_get)

    evict = sub.add_parser("evict", help="drop an object's live instance from memory")
    evict.add_argument("id", metavar="ID")
    admin_options(evict)
    evict.set_defaults(func=cmd_evict)

    alarm = sub.add_parser("alarm", help="run an object's alarm now")
    alarm.add_argument("id", metavar="ID")
    alarm.add_argument("--run-now", action="store_true", help="run it now, once")
    admin_options(alarm)
    alarm.set_defaults(func=cmd_alarm)

    letters = sub.add_parser("dead-letters", help="alarms that exhausted their retries")
    letters.add_argument("--namespace", help="only this binding")
    letters.add_argument("--replay", metavar="ID", help="re-run this object's dead letters")
    offline_options(letters)
    admin_options(letters)
    letters.set_defaults(func=cmd_dead_letters)

    check = sub.add_parser(
        "audit", help="prove every object is stored only in its jurisdiction (exit 1 if not)"
    )
    offline_options(check, flag=False)
    check.set_defaults(func=cmd_audit)
