"""What the gateway gives edge handlers: the runner, and each handler's variables and bindings.

Bindings are the durable-object namespaces of the `objects:` section (a namespace with
`sites:` only reaches those sites' functions) and, for site functions, `ASSETS`. A preview
sees its namespaces in the `preview` scope, so its objects are never production's.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgeproxy.config.edge import HandlerLimits as LimitsConfig
from edgeproxy.config.edge import ObjectsConfig
from edgeproxy.edge.env import Assets, Env
from edgeproxy.edge.runner import EdgeRunner, HandlerLimits
from edgeproxy.objects import ObjectSystem
from edgeproxy.types import ASGIApp

PRODUCTION = "production"
PREVIEW = "preview"
ASSETS = "ASSETS"


def limits(config: LimitsConfig) -> HandlerLimits:
    return HandlerLimits(wall_time=config.wall_time, cpu_time=config.cpu_time)


class EdgeHost:
    """Builds handlers' `env`s from the running object system and the `objects:` config."""

    def __init__(
        self, runner: EdgeRunner, objects: ObjectSystem | None, config: ObjectsConfig
    ) -> None:
        self.runner = runner
        self.objects = objects
        self.config = config
        if objects is not None:
            # An object's `self.env` holds every namespace of its scope (`sites:` limits
            # which functions see a binding, not which objects), to reach other objects.
            for environment in (PRODUCTION, PREVIEW):
                namespaces = {
                    binding: objects.namespace(binding, environment)
                    for binding in config.namespaces
                }
                env = Env({}, namespaces)
                for binding in config.namespaces:
                    objects.namespace(binding, environment, env=env)

    def _namespaces(self, site: str | None, environment: str) -> dict[str, object]:
        if self.objects is None:
            return {}
        return {
            binding: self.objects.namespace(binding, environment)
            for binding, namespace in self.config.namespaces.items()
            if namespace.sites is None or (site is not None and site in namespace.sites)
        }

    def route_env(self, variables: Mapping[str, str]) -> Env:
        """The env of a route's `handler:`: its variables and every site-less namespace."""
        return Env(variables, self._namespaces(None, PRODUCTION))

    def site_env(
        self, site: str, variables: Mapping[str, str], preview: bool, assets: ASGIApp
    ) -> Env:
        """The env of a deployment's functions in production or in a preview."""
        environment = PREVIEW if preview else PRODUCTION
        bindings = {**self._namespaces(site, environment), ASSETS: Assets(assets)}
        return Env(variables, bindings)
