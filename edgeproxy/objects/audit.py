"""The pinning audit: proof from the files themselves that no object left its jurisdiction.

`audit(settings)` opens every shard file read-only and checks every ID that appears in any
table: well formed, tagged with the jurisdiction of the root it sits in, in the shard its
hash names, and (when the server secret is readable) signed by the namespace its rows
name. It also reports shard files that `layout.json` does not account for. The CLI exits
non-zero when the report is not `ok`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edgeproxy.exceptions import InvalidObjectId, ObjectSettingsError
from edgeproxy.objects import schema
from edgeproxy.objects.ids import decode_id, mac_verifies, shard_index, tag_of
from edgeproxy.objects.keys import namespace_key, read_secret
from edgeproxy.objects.layout import SHARD_FILE, read_layout, shard_files
from edgeproxy.objects.settings import (
    Jurisdiction,
    Jurisdictions,
    ObjectSettings,
    display_name,
    resolve_jurisdictions,
)


@dataclass(frozen=True)
class AuditViolation:
    """One finding: `kind` is a stable word (foreign-jurisdiction, bad-mac, malformed-id,
    misplaced, unaccounted-file, layout, shard-meta, unreadable)."""

    kind: str
    jurisdiction: str
    file: str
    detail: str
    object_id: str | None = None

    def __str__(self) -> str:
        return f"[{self.kind}] {display_name(self.jurisdiction)}: {self.file}: {self.detail}"


@dataclass
class AuditReport:
    """What the audit looked at and what it found."""

    shards: int = 0
    objects: int = 0
    macs_checked: bool = False
    violations: list[AuditViolation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        macs = "MACs verified" if self.macs_checked else "MACs not checked (no secret)"
        head = (
            f"{'ok' if self.ok else 'VIOLATIONS'}: {self.shards} shard files, "
            f"{self.objects} objects, {macs}, {len(self.violations)} violations"
        )
        return "\n".join([head, *(f"  {violation}" for violation in self.violations)])


def audit(settings: ObjectSettings) -> AuditReport:
    """Audit every jurisdiction root of `settings`; writes nothing."""
    jurisdictions = resolve_jurisdictions(settings)
    secret = read_secret(settings.secret_path)
    report = AuditReport(macs_checked=secret is not None)
    for jurisdiction in jurisdictions:
        _audit_root(jurisdiction, jurisdictions, secret, report)
    return report


def _audit_root(
    jurisdiction: Jurisdiction,
    jurisdictions: Jurisdictions,
    secret: bytes | None,
    report: AuditReport,
) -> None:
    root = jurisdiction.root
    if not root.is_dir():
        return
    name = jurisdiction.name

    def violation(kind: str, file: Path | str, detail: str, object_id: str | None = None) -> None:
        report.violations.append(AuditViolation(kind, name, str(file), detail, object_id))

    try:
        recorded = read_layout(root)
    except ObjectSettingsError as exc:
        violation("layout", root / "layout.json", str(exc))
        recorded = None
    accounted: set[str] = set()
    if recorded is None:
        if shard_files(root):
            violation("layout", root, "shard files but no layout.json")
    else:
        if recorded.jurisdiction != name:
            violation(
                "layout",
                root / "layout.json",
                f"records jurisdiction {display_name(recorded.jurisdiction)}",
            )
        if recorded.shards != jurisdiction.shards:
            violation(
                "layout",
                root / "layout.json",
                f"records {recorded.shards} shards, {jurisdiction.shards} configured",
            )
        accounted = {f"shard-{index:02d}.sqlite3" for index in range(recorded.shards)}
    for path in sorted(root.iterdir()):
        if path.name.endswith(".sqlite3") and path.name not in accounted:
            violation("unaccounted-file", path, "a shard file layout.json does not account for")
        match = SHARD_FILE.match(path.name)
        if match or path.name.endswith(".sqlite3"):
            index = int(match.group(1)) if match else -1
            _audit_shard(path, index, jurisdiction, jurisdictions, secret, report, violation)


def _audit_shard(
    path: Path,
    index: int,
    jurisdiction: Jurisdiction,
    jurisdictions: Jurisdictions,
    secret: bytes | None,
    report: AuditReport,
    violation: _Report,
) -> None:
    report.shards += 1
    try:
        conn = schema.connect_readonly(path)
    except sqlite3.Error as exc:
        violation("unreadable", path, f"cannot open read-only: {exc}")
        return
    try:
        meta = schema.read_meta(conn)
        if meta and (
            meta.get("jurisdiction") != jurisdiction.name or meta.get("shard") != str(index)
        ):
            violation(
                "shard-meta",
                path,
                f"created as shard {meta.get('shard')} of jurisdiction "
                f"{display_name(meta.get('jurisdiction', '?'))}",
            )
        rows = schema.all_ids(conn)
    except sqlite3.Error as exc:
        violation("unreadable", path, str(exc))
        return
    finally:
        conn.close()
    seen: set[tuple[str, str, str]] = set()
    for table, binding, scope, hex_id in rows:
        if (binding, scope, hex_id) in seen:
            continue
        seen.add((binding, scope, hex_id))
        report.objects += 1
        where = f"{table} row of {binding} ({scope})"
        try:
            raw = decode_id(hex_id)
        except InvalidObjectId as exc:
            violation("malformed-id", path, f"{where}: {exc}", hex_id)
            continue
        tag = tag_of(raw)
        if tag != jurisdiction.tag:
            owner = jurisdictions.by_tag(tag)
            belongs = owner.display if owner is not None else f"unknown tag 0x{tag:04x}"
            violation(
                "foreign-jurisdiction",
                path,
                f"{where}: object {hex_id[:12]}… belongs to {belongs}, stored under "
                f"{jurisdiction.display}",
                hex_id,
            )
            continue
        if index >= 0 and shard_index(raw, jurisdiction.shards) != index:
            violation(
                "misplaced",
                path,
                f"{where}: object {hex_id[:12]}… belongs in shard "
                f"{shard_index(raw, jurisdiction.shards):02d}",
                hex_id,
            )
        if secret is not None and not mac_verifies(namespace_key(secret, binding, scope), raw):
            violation(
                "bad-mac",
                path,
                f"{where}: object {hex_id[:12]}… was not made by that namespace (MAC fails)",
                hex_id,
            )


class _Report(Protocol):
    def __call__(
        self, kind: str, file: Path | str, detail: str, object_id: str | None = None
    ) -> None: ...
