"""From the `objects:` section of rules.yaml to the settings and classes an ObjectSystem runs."""

from __future__ import annotations

from pathlib import Path

from edgeproxy.config.edge import ObjectsConfig
from edgeproxy.edge.loader import format_load_error
from edgeproxy.edge.modules import HandlerPackage
from edgeproxy.exceptions import ConfigError, ConfigIssue
from edgeproxy.objects.api import DurableObject
from edgeproxy.objects.settings import JurisdictionSpec, NamespaceSpec, ObjectSettings


def object_settings(config: ObjectsConfig, state_dir: Path) -> ObjectSettings:
    """Storage roots are relative to the state dir; each defaults to objects/<name>."""

    def root(name: str, path: str | None) -> Path:
        return (state_dir / (path or f"objects/{name}")).resolve()

    jurisdictions = [
        JurisdictionSpec("", root("default", config.default.path), config.default.shards)
    ]
    jurisdictions += [
        JurisdictionSpec(name, root(name, spec.path), spec.shards)
        for name, spec in config.jurisdictions.items()
    ]
    return ObjectSettings(
        state_dir=state_dir,
        jurisdictions=jurisdictions,
        idle_timeout=config.idle_timeout,
        alarm_retry_base=config.alarm_retry_base,
        alarm_max_retries=config.alarm_max_retries,
    )


def load_namespaces(config: ObjectsConfig, config_path: Path) -> list[NamespaceSpec]:
    """Import every namespace's class (paths relative to the config file's directory);
    raise ConfigError naming each one that fails."""
    config_dir = config_path.parent
    specs: list[NamespaceSpec] = []
    issues: list[ConfigIssue] = []
    # One package per directory, so a file is imported once: two bindings of one class
    # share it, module state included.
    packages: dict[Path, HandlerPackage] = {}
    for binding, namespace in config.namespaces.items():
        where = f"objects.namespaces.{binding}.class"
        try:
            specs.append(
                NamespaceSpec(binding, _load_class(namespace.class_, config_dir, packages))
            )
        except _LoadFailure as exc:
            issues.append(ConfigIssue(where, str(exc), str(config_path)))
    if issues:
        raise ConfigError(issues)
    return specs


class _LoadFailure(Exception):
    pass


def _load_class(
    spec: str, config_dir: Path, packages: dict[Path, HandlerPackage]
) -> type[DurableObject]:
    file, _, name = spec.rpartition(":")
    path = (config_dir / file).resolve()
    if not path.is_file():
        raise _LoadFailure(f"{file}: no such file (looked for {path})")
    package = packages.get(path.parent)
    if package is None:
        package = packages[path.parent] = HandlerPackage(path.parent, "objects")
    try:
        module = package.import_file(path)
    except (Exception, SystemExit) as exc:
        raise _LoadFailure(f"{file} could not be loaded:\n{format_load_error(exc)}") from exc
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
        if cls is None:
            found = f"no {name} in the module"
        elif isinstance(cls, type):
            found = f"class {name} does not subclass it"
        else:
            found = f"{name} is a {type(cls).__name__}"
        raise _LoadFailure(
            f"{file}: {name} must be a class subclassing edgeproxy.objects.DurableObject ({found})"
        )
    return cls
