"""Durable objects: single-instance stateful actors addressed by ID, with transactional
storage in SQLite shards pinned to a jurisdiction.

The class-facing API is `DurableObject`, `DurableObjectState`, `DurableObjectStorage`
and `AlarmInfo`; the host-facing one is `ObjectSystem` with its settings, `ObjectStore`
for offline inspection and `audit` for the pinning check. See DESIGN.md.
"""

from edgeproxy.objects.api import AlarmInfo, DurableObject, DurableObjectState
from edgeproxy.objects.audit import AuditReport, AuditViolation, audit
from edgeproxy.objects.ids import ObjectId
from edgeproxy.objects.namespace import Namespace, Stub
from edgeproxy.objects.settings import JurisdictionSpec, NamespaceSpec, ObjectSettings
from edgeproxy.objects.storage import DurableObjectStorage
from edgeproxy.objects.store import DeadLetter, ObjectDetail, ObjectRecord, ObjectStore
from edgeproxy.objects.system import ObjectSystem

__all__ = [
    "AlarmInfo",
    "AuditReport",
    "AuditViolation",
    "DeadLetter",
    "DurableObject",
    "DurableObjectState",
    "DurableObjectStorage",
    "JurisdictionSpec",
    "Namespace",
    "NamespaceSpec",
    "ObjectDetail",
    "ObjectId",
    "ObjectRecord",
    "ObjectSettings",
    "ObjectStore",
    "ObjectSystem",
    "Stub",
    "audit",
]
