"""Pydantic models of `rules.yaml`.

The models check each value on its own (types, ranges, one action per route). Checks that
need the whole file (an origin a route names must exist, two routes must not tie) happen in
`edgeproxy.config.loader` after validation, so their errors carry the same YAML paths and lines.
"""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator, model_validator

from edgeproxy.config.edge import ObjectsConfig, RouteHandler, SiteFunctions
from edgeproxy.config.units import ByteSize, Duration
from edgeproxy.types import Balancing, HTTPMethod, RedirectStatus

MiB = 1024 * 1024


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Timeouts(Model):
    """Limits on how long a client may take."""

    header_read: Duration = Field(
        10.0, description="Seconds a client has to send a request's headers (slowloris guard)."
    )
    keep_alive: Duration = Field(
        5.0, description="Seconds an idle keep-alive connection stays open."
    )
    shutdown: Duration = Field(
        30.0, description="Seconds in-flight requests get to finish on SIGTERM."
    )


class ServerConfig(Model):
    """How the server listens and what it trusts."""

    listen: str = Field(
        "127.0.0.1:8080", description="HOST:PORT to listen on (overridden by --host/--port)."
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks whose X-Forwarded-* headers are believed. Empty: nobody's.",
    )
    internal_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")],
        description="Networks allowed to read /_edge/status and /_edge/metrics (health and "
        "ready are open to all).",
    )
    max_body_size: ByteSize = Field(
        100 * MiB, description="Largest request body accepted (413 above)."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    state_dir: str = Field(
        ".edgeproxy", description="Where the server writes its state (overridden by --state-dir)."
    )
    access_log: bool = Field(True, description="Write one JSON line per request to stdout.")
    handler_reports: bool = Field(
        True,
        description="Write each edge handler invocation's REPORT line to stderr (they are "
        "always kept for `edgeproxy logs` and counted in the metrics).",
    )

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PassiveHealth(Model):
    """Eject a target that fails `max_fails` times in a row for `fail_timeout` seconds."""

    max_fails: int = Field(
        3, ge=0, description="Consecutive failures before ejection; 0 never ejects."
    )
    fail_timeout: Duration = Field(10.0, description="Seconds an ejected target stays out.")


class HealthCheck(Model):
    """Active health check: GET `path` on every target each `interval`."""

    path: str = "/"
    interval: Duration = 5.0
    timeout: Duration = 2.0
    expect_status: int | None = Field(
        None, description="Status a healthy target answers; default any 2xx or 3xx."
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value


_TARGET = re.compile(r"^https?://[^/?#@\s]+(/[^?#\s]*)?$")


class Origin(Model):
    """A named upstream service: one or more target URLs and how to use them."""

    targets: list[str] = Field(min_length=1, description="Base URLs such as http://127.0.0.1:9000.")
    balancing: Balancing = "round_robin"
    connect_timeout: Duration = 5.0
    read_timeout: Duration = Field(
        60.0, description="Seconds to wait for response headers and between body reads."
    )
    passive_health: PassiveHealth = Field(default_factory=PassiveHealth)
    health_check: HealthCheck | None = None
    retries: int = Field(
        1,
        ge=0,
        le=5,
        description="Retries of idempotent requests on another target after a connect failure.",
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("targets")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not _TARGET.match(url):
                raise ValueError(
                    "expected a base URL such as http://127.0.0.1:9000"
                    f" (no query or credentials), got {url!r}"
                )
        return value


class Match(Model):
    """Which requests a route takes."""

    host: list[str] | None = Field(
        None, description="Exact host names or `*.example.com`; any host when omitted."
    )
    path: str = Field(
        "/",
        description="Path prefix on whole segments; `:name` matches one segment,"
        " a final `*` or `<*>` the rest.",
    )
    methods: list[HTTPMethod] | None = None

    @field_validator("host", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _host_syntax(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        hosts = []
        for host in value:
            name = host.lower()
            bare = name[2:] if name.startswith("*.") else name
            if not re.fullmatch(
                r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", bare
            ):
                raise ValueError(
                    f"expected a host name such as api.example.com or *.example.com, got {host!r}"
                )
            hosts.append(name)
        return hosts

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value


class Replace(Model):
    pattern: str = Field(description="Regular expression searched in the upstream path.")
    with_: str = Field(
        "", alias="with", description="Replacement; `\\1` or `\\g<name>` refer to groups."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class Rewrite(Model):
    """How the path sent to the origin is built.

    Applied in order: strip, add, replace; `to` replaces all.
    """

    strip_prefix: bool = Field(False, description="Remove the route's matched path prefix.")
    add_prefix: str = Field("", description="Prepend this path.")
    replace: Replace | None = None
    to: str | None = Field(None, description="Target template with `:name`, `:splat` or `<*>`.")

    @field_validator("add_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError(f"must start with '/' and not end with '/', got {value!r}")
        return value


class HeaderOps(Model):
    set: dict[str, str] = Field(
        default_factory=dict, description="Replace (or create) these headers."
    )
    add: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Append these values."
    )
    remove: list[str] = Field(default_factory=list, description="Drop these headers.")

    @model_validator(mode="after")
    def _safe(self) -> HeaderOps:
        names = [*self.set, *self.add, *self.remove]
        values = [*self.set.values()]
        for value in self.add.values():
            values.extend([value] if isinstance(value, str) else value)
        for name in names:
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
                raise ValueError(f"not a valid header name: {name!r}")
        for value in values:
            if any(ch in value for ch in "\r\n\0"):
                raise ValueError(f"header value contains a line break or NUL: {value!r}")
        return self


class RouteHeaders(Model):
    request: HeaderOps = Field(
        default_factory=HeaderOps, description="Applied to the request sent to the origin."
    )
    response: HeaderOps = Field(
        default_factory=HeaderOps, description="Applied to the response sent to the client."
    )


class Redirect(Model):
    to: str = Field(description="Target URL or path; `:name`, `:splat` and `<*>` are filled in.")
    status: RedirectStatus = 302

    @field_validator("status", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        # A `${VAR}` reference yields a string, and lax mode won't coerce "301" to a Literal int.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class Respond(Model):
    status: int = Field(200, ge=100, le=599)
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


class BasicAuth(Model):
    username: str
    password: str


class PreviewProtection(Model):
    """Who may see preview deployments: HTTP basic auth, or a token (header or cookie)."""

    basic_auth: BasicAuth | None = None
    token: str | None = Field(
        None,
        description="Accepted as `Authorization: Bearer TOKEN`, `?edge_token=TOKEN` (which sets a "
        "cookie) or the `edge_preview` cookie.",
    )

    @model_validator(mode="after")
    def _one_method(self) -> PreviewProtection:
        if (self.basic_auth is None) == (self.token is None):
            raise ValueError("set exactly one of basic_auth or token")
        return self


class Build(Model):
    command: str | None = Field(
        None, description="Shell command run in the checkout; none: publish as is."
    )
    output: str = Field(".", description="Directory (relative to the checkout) to publish.")
    timeout: Duration = Field(600.0, description="Seconds a build may take.")


class SiteEnv(Model):
    production: dict[str, str] = Field(default_factory=dict)
    preview: dict[str, str] = Field(default_factory=dict)


_SITE_NAME = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"


class Site(Model):
    """A static site served from immutable deployments."""

    hosts: list[str] = Field(
        default_factory=list, description="Production host names (exact); previews need none."
    )
    production_branch: str = "main"
    preview_domain: str = Field(
        "localhost", description="Preview hosts are <alias>.<site>.<preview_domain>."
    )
    source: str | None = Field(
        None,
        description="Directory (relative to rules.yaml) published as is (no build) at start "
        "when the site has no deployment yet.",
    )
    build: Build = Field(
        default_factory=Build,
        description="How a pushed commit becomes a deployment (run in a clean checkout).",
    )
    env: SiteEnv = Field(default_factory=SiteEnv)
    preview_protection: PreviewProtection | None = None
    redirects_dialect: Literal["cloudflare", "netlify"] = "cloudflare"
    immutable_paths: list[str] = Field(
        default_factory=lambda: ["/assets/*"],
        description="Path patterns served as `Cache-Control: public, max-age=31536000, immutable`.",
    )
    retention: int = Field(
        10, ge=1, description="Deployments kept per branch (plus any an alias names)."
    )
    repo_url: str | None = Field(
        None,
        description="Repository the deploy hook fetches pushed refs from (any URL or path git "
        "can fetch).",
    )
    webhook_secret: str | None = Field(
        None,
        description="HMAC-SHA256 secret of POST /_edge/api/sites/<site>/hooks/push "
        "(X-Hub-Signature-256); unset or empty: the deploy hook is off.",
    )
    functions: SiteFunctions = Field(
        default_factory=SiteFunctions,
        description="Limits of the handlers in each deployment's functions/ directory.",
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]


class Admin(Model):
    """The admin API under /_edge/api/ and the deploy CLI."""

    token: str | None = Field(
        None,
        description="Bearer token for /_edge/api/, and the password (any username) of git "
        "push/fetch at /_edge/git/<site>.git; without it both answer 401.",
    )


class RouteCache(Model):
    """The shared cache in front of a route (RFC 9111)."""

    enabled: bool = True
    default_ttl: Duration | None = Field(
        None, description="Seconds to keep a storable response whose origin gives no freshness."
    )
    max_ttl: Duration | None = Field(None, description="Upper bound on any freshness lifetime.")
    stale_if_error: Duration = Field(
        0.0,
        description="Seconds past freshness a stored response may stand in for a failing origin.",
    )
    query: Literal["keep", "sort", "ignore"] = Field(
        "keep", description="How the query string enters the cache key."
    )
    query_allow: list[str] = Field(
        default_factory=list, description="Only these query parameters enter the key (when set)."
    )
    max_object_size: ByteSize = Field(
        10 * MiB, description="Larger responses stream through without being stored."
    )
    cdn_cache_control: str | None = Field(
        "CDN-Cache-Control",
        description="Targeted field (RFC 9213) that overrides Cache-Control here; null: none.",
    )


class CacheConfig(Model):
    """The response cache shared by every cached route."""

    max_bytes: ByteSize = Field(
        256 * MiB, description="Memory bound; least recently used go first."
    )


ACTIONS = ("proxy", "redirect", "respond", "site")


class Route(Model):
    """One entry of `routes`: a match and exactly one action."""

    name: str | None = None
    match: Match = Field(default_factory=Match)
    proxy: str | None = Field(None, description="Name of an origin to forward to.")
    redirect: Redirect | None = None
    respond: Respond | None = None
    site: str | None = Field(
        None, description="Name of a site to serve (the matched prefix is stripped)."
    )
    rewrite: Rewrite = Field(default_factory=Rewrite)
    headers: RouteHeaders = Field(default_factory=RouteHeaders)
    preserve_host: bool = Field(
        False, description="Send the client's Host to the origin instead of the origin's."
    )
    max_body_size: ByteSize | None = Field(
        None, description="Overrides server.max_body_size for this route."
    )
    cache: RouteCache | None = Field(None, description="Cache this route's responses.")
    handler: RouteHandler | None = Field(
        None, description="Python edge handler run as middleware around the action."
    )

    @model_validator(mode="after")
    def _one_action(self) -> Route:
        chosen = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise ValueError(
                f"a route needs exactly one action of {', '.join(ACTIONS)} (found: {found})"
            )
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)


class RulesConfig(Model):
    """The whole of `rules.yaml`."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    origins: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], Origin] = Field(
        default_factory=dict
    )
    routes: list[Route] = Field(default_factory=list)
    sites: dict[Annotated[str, Field(pattern=_SITE_NAME)], Site] = Field(default_factory=dict)
    admin: Admin = Field(default_factory=Admin)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig)
