"""What several `edgeproxy` commands share: loading the config, calling the admin API, tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from edgeproxy.admin.client import AdminClient, AdminError
from edgeproxy.config.loader import load_config
from edgeproxy.config.models import RulesConfig
from edgeproxy.exceptions import ConfigError


def load_or_report(path: str) -> RulesConfig | None:
    try:
        return load_config(path)
    except FileNotFoundError:
        print(f"{path}: no such file", file=sys.stderr)
    except ConfigError as exc:
        report_issues(path, exc)
    return None


def report_issues(path: str, error: ConfigError) -> None:
    count = len(error.issues)
    print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
    for issue in error.issues:
        print(f"  {issue}", file=sys.stderr)


def admin_client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(args.server, args.token)


def admin_call(args: argparse.Namespace, work: Callable[[AdminClient], int]) -> int:
    client = admin_client(args)
    try:
        return work(client)
    except AdminError as exc:
        print(f"edgeproxy: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def admin_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--server", help="gateway URL (default: $EDGEPROXY_SERVER or http://127.0.0.1:8080)"
    )
    command.add_argument("--token", help="admin token (default: $EDGEPROXY_TOKEN)")
