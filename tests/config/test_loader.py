from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgeproxy.config.loader import config_json_schema, load_config, parse_config
from edgeproxy.config.models import RulesConfig
from edgeproxy.exceptions import ConfigError, ConfigIssue


def yaml_text(text: str) -> str:
    """Dedent a test file so that its first written line is line 1."""
    return textwrap.dedent(text).lstrip("\n")


def issues_of(text: str, environ: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text(text), environ=environ or {})
    return caught.value.issues


def parse(text: str, environ: dict[str, str] | None = None) -> RulesConfig:
    return parse_config(yaml_text(text), environ=environ or {})


FULL = """
server:
  listen: "0.0.0.0:${PORT:-8080}"
  trusted_proxies: [10.0.0.0/8, "::1/128"]
  max_body_size: 10MiB
  timeouts: {header_read: 250ms, keep_alive: 2m, shutdown: 1h}
  access_log: false
origins:
  hotels: &hotels
    targets: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    balancing: least_conn
    read_timeout: 30s
    health_check: {path: /healthz, interval: 10s, expect_status: 204}
    retries: 2
  pets:
    <<: *hotels
    targets: http://127.0.0.1:9003
routes:
  - name: hotels-api
    match: {host: [API.example.com, "*.example.org"], path: /api/hotels, methods: [GET, POST]}
    proxy: hotels
    rewrite:
      strip_prefix: true
      add_prefix: /v2
      replace: {pattern: "^/old/(.*)", with: "/new/\\\\1"}
    headers:
      request: {set: {X-Edge: "1"}, remove: [Cookie]}
      response: {add: {Cache-Control: [public, max-age=60], Vary: Accept}}
    max_body_size: 1GB
  - match: {path: /pets}
    proxy: pets
    preserve_host: true
  - match: {path: /old}
    redirect: {to: "/new/:splat", status: 308}
  - match: {path: /ping}
    respond: {status: 200, body: "$${not a variable}"}
"""


def test_full_config_parses_into_values() -> None:
    config = parse(FULL)

    server = config.server
    assert (server.host, server.port) == ("0.0.0.0", 8080)
    assert [str(net) for net in server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert server.max_body_size == 10 * 1024 * 1024
    assert server.timeouts.header_read == 0.25
    assert server.timeouts.keep_alive == 120.0
    assert server.timeouts.shutdown == 3600.0
    assert server.access_log is False

    hotels = config.origins["hotels"]
    assert hotels.targets == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    assert hotels.balancing == "least_conn"
    assert hotels.read_timeout == 30.0
    assert hotels.health_check is not None
    assert (hotels.health_check.path, hotels.health_check.interval) == ("/healthz", 10.0)
    assert hotels.health_check.expect_status == 204
    # `<<: *hotels` copies what pets doesn't say itself.
    pets = config.origins["pets"]
    assert pets.targets == ["http://127.0.0.1:9003"]
    assert (pets.balancing, pets.retries, pets.read_timeout) == ("least_conn", 2, 30.0)

    api, pets_route, old, ping = config.routes
    assert api.name == "hotels-api"
    assert api.match.host == ["api.example.com", "*.example.org"]
    assert api.match.methods == ["GET", "POST"]
    assert (api.action, api.proxy) == ("proxy", "hotels")
    assert api.rewrite.replace is not None
    assert api.rewrite.replace.with_ == "/new/\\1"
    assert (api.rewrite.strip_prefix, api.rewrite.add_prefix) == (True, "/v2")
    assert api.headers.request.set == {"X-Edge": "1"}
    assert api.headers.request.remove == ["Cookie"]
    assert api.headers.response.add == {"Cache-Control": ["public", "max-age=60"], "Vary": "Accept"}
    assert api.max_body_size == 10**9
    assert pets_route.preserve_host is True
    assert old.redirect is not None
    assert (old.redirect.to, old.redirect.status) == ("/new/:splat", 308)
    assert ping.respond is not None
    assert ping.respond.body == "${not a variable}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# nothing configured yet\n", id="only-comments"),
        pytest.param("---\n", id="only-document-marker"),
    ],
)
def test_empty_file_is_all_defaults(text: str) -> None:
    assert parse_config(text, environ={}) == RulesConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML itself
        pytest.param(
            """
            origins:
              pets:
                targets: http://127.0.0.1:9001
              pets:
                targets: http://127.0.0.1:9002
            """,
            (4, "origins.pets", "duplicate key 'pets' (first on line 2)"),
            id="duplicate-key",
        ),
        pytest.param(
            """
            routes:
              - match: {path: /a}
                respond: {status: 200}
                respond: {status: 201}
            """,
            (4, "routes[0].respond", "duplicate key 'respond' (first on line 3)"),
            id="duplicate-key-in-list-item",
        ),
        pytest.param(
            """
            origins:
              200:
                targets: http://127.0.0.1:9001
            """,
            (2, "origins", "key '200' is read as int; quote it"),
            id="integer-key",
        ),
        pytest.param(
            """
            server:
              yes: true
            """,
            (2, "server", "key 'yes' is read as bool"),
            id="boolean-key",
        ),
        pytest.param(
            """
            server:
              ? [a, b]
              : 1
            """,
            (2, "server", "a key must be a string"),
            id="list-key",
        ),
        pytest.param(
            """
            server:
              listen: 127.0.0.1:8080
               access_log: true
            """,
            (3, "", "invalid YAML: mapping values are not allowed here (column 14)"),
            id="bad-indentation",
        ),
        pytest.param(
            """
            server:
            \tlisten: 127.0.0.1:8080
            """,
            (2, "", "invalid YAML: found character '\\t' that cannot start any token"),
            id="tab-indentation",
        ),
        pytest.param(
            "server: {listen: 1}\n---\nroutes: []\n",
            (
                2,
                "",
                "invalid YAML: expected a single document in the stream on line 1: "
                "but found another document (column 1)",
            ),
            id="two-documents",
        ),
        pytest.param(
            "server: \x07\n",
            (1, "", "invalid YAML: special characters are not allowed: '\\x07'"),
            id="control-character",
        ),
        pytest.param(
            "server: !env LISTEN\n",
            (1, "server", "could not determine a constructor for the tag '!env'"),
            id="unknown-tag",
        ),
        pytest.param(
            "server: &s\n  listen: *s\n",
            (2, "server.listen", "an alias refers to a node that contains it"),
            id="recursive-alias",
        ),
        pytest.param(
            """
            origins:
              pets:
                targets: http://127.0.0.1:9001
                <<: [http://127.0.0.1:9001]
            """,
            (4, "origins.pets", "a merge key (<<) takes a mapping"),
            id="merge-of-a-non-mapping",
        ),
        # A file cut short while it was being written.
        pytest.param(
            """
            routes:
              - match: {path: /api}
                respond: {body: "half a sente
            """,
            (
                4,
                "",
                "invalid YAML: while scanning a quoted scalar on line 3: "
                "found unexpected end of stream (column 1)",
            ),
            id="truncated-in-quoted-string",
        ),
        pytest.param(
            """
            origins:
              pets: {targets: [http://127.0.0.1:9001,
            """,
            (
                3,
                "",
                "invalid YAML: while parsing a flow node on line 3: "
                "expected the node content, but found '<stream end>'",
            ),
            id="truncated-in-flow-list",
        ),
        pytest.param(
            """
            routes:
              - match: {path: /api}
                prox
            """,
            (4, "", "could not find expected ':'"),
            id="truncated-in-key",
        ),
        pytest.param(
            """
            routes:
              - match: {path: /api}
                proxy:
            """,
            (
                2,
                "routes[0]",
                "a route needs exactly one action of proxy, redirect, respond, site (found: none)",
            ),
            id="truncated-after-key",
        ),
        # Top level
        pytest.param(
            "- server\n- routes\n",
            (1, "", "the top level must be a mapping of server, origins and routes, got a list"),
            id="top-level-list",
        ),
        pytest.param(
            "just some words\n",
            (
                1,
                "",
                "the top level must be a mapping of server, origins "
                "and routes, got 'just some words'",
            ),
            id="top-level-scalar",
        ),
        # Unknown keys
        pytest.param(
            """
            origins:
              hotels:
                targets: http://127.0.0.1:9001
                balancng: random
            """,
            (4, "origins.hotels.balancng", "unknown key 'balancng'; did you mean 'balancing'?"),
            id="unknown-key-close-match",
        ),
        pytest.param(
            "rutes: []\n",
            (1, "rutes", "unknown key 'rutes'; did you mean 'routes'?"),
            id="unknown-top-level-key",
        ),
        pytest.param(
            """
            server:
              colour: blue
            """,
            (
                2,
                "server.colour",
                "unknown key 'colour' (accepted: listen, trusted_proxies, internal_networks, "
                "max_body_size, timeouts, state_dir, access_log, handler_reports)",
            ),
            id="unknown-key-lists-accepted",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                rewrite:
                  replace: {pattern: x, wiht: y}
            """,
            (4, "routes[0].rewrite.replace.wiht", "unknown key 'wiht'; did you mean 'with'?"),
            id="unknown-key-suggests-alias",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                headers:
                  response:
                    sett: {X-A: b}
            """,
            (5, "routes[0].headers.response.sett", "did you mean 'set'?"),
            id="unknown-key-deep",
        ),
        pytest.param(
            """
            origins:
              pets:
                targets: http://127.0.0.1:9001
                health_check: {intreval: 5s}
            """,
            (4, "origins.pets.health_check.intreval", "did you mean 'interval'?"),
            id="unknown-key-in-optional-model",
        ),
        # Values
        pytest.param(
            """
            origins:
              hotels:
                targets: http://127.0.0.1:9001
                balancing: rr
            """,
            (
                4,
                "origins.hotels.balancing",
                "expected one of 'round_robin', 'least_conn', 'ip_hash' or 'random', got 'rr'",
            ),
            id="literal-string",
        ),
        pytest.param(
            """
            routes:
              - redirect: {to: /x, status: 300}
            """,
            (2, "routes[0].redirect.status", "expected one of 301, 302, 303, 307 or 308, got 300"),
            id="literal-int",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                match:
                  methods: [GET, post]
            """,
            (4, "routes[0].match.methods[1]", "expected one of 'GET', 'HEAD', "),
            id="literal-in-list",
        ),
        pytest.param(
            """
            origins:
              hotels:
                balancing: random
            """,
            (2, "origins.hotels.targets", "missing required key 'targets'"),
            id="missing-key",
        ),
        pytest.param(
            """
            origins:
              hotels:
                targets: []
            """,
            (
                3,
                "origins.hotels.targets",
                "List should have at least 1 item after validation, not 0, got []",
            ),
            id="empty-targets",
        ),
        pytest.param(
            """
            origins:
              hotels:
                targets: [http://127.0.0.1:9001, "ftp://files"]
            """,
            (
                3,
                "origins.hotels.targets",
                "expected a base URL such as http://127.0.0.1:9000 "
                "(no query or credentials), got 'ftp://files'",
            ),
            id="bad-target-url",
        ),
        pytest.param(
            """
            origins:
              "hotels v2":
                targets: http://127.0.0.1:9001
            """,
            (2, "origins['hotels v2']", "invalid key 'hotels v2': String should match pattern"),
            id="bad-origin-name",
        ),
        pytest.param(
            """
            origins:
              hotels:
                targets: http://127.0.0.1:9001
                retries: 9
            """,
            (4, "origins.hotels.retries", "Input should be less than or equal to 5, got 9"),
            id="number-out-of-range",
        ),
        pytest.param(
            """
            origins:
              hotels:
                targets: http://127.0.0.1:9001
                retries: lots
            """,
            (4, "origins.hotels.retries", "expected an integer, got 'lots'"),
            id="not-an-integer",
        ),
        pytest.param(
            """
            server:
              access_log: sometimes
            """,
            (2, "server.access_log", "expected true or false, got 'sometimes'"),
            id="not-a-boolean",
        ),
        pytest.param(
            """
            server:
              listen: localhost
            """,
            (2, "server.listen", "expected HOST:PORT such as 127.0.0.1:8080, got 'localhost'"),
            id="value-error-prefix-stripped",
        ),
        pytest.param(
            """
            server:
              trusted_proxies: [10.0.0.0/8, 10.1.2.3/8]
            """,
            (
                2,
                "server.trusted_proxies[1]",
                "value is not a valid IPv4 or IPv6 network, got '10.1.2.3/8'",
            ),
            id="bad-network",
        ),
        pytest.param(
            """
            server:
              timeouts:
                shutdown: 5 years
            """,
            (
                3,
                "server.timeouts.shutdown",
                "expected a duration such as 5, 2.5s or 250ms, got '5 years'",
            ),
            id="bad-duration",
        ),
        pytest.param(
            """
            server:
              max_body_size: 10 parsecs
            """,
            (
                2,
                "server.max_body_size",
                "expected a size such as 1048576, 512KiB or 10MB, got '10 parsecs'",
            ),
            id="bad-size",
        ),
        pytest.param(
            """
            routes:
              server: {}
            """,
            (1, "routes", "expected a list, got a mapping"),
            id="mapping-for-list",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
              - /api
            """,
            (3, "routes[1]", "expected a mapping, got '/api'"),
            id="scalar-for-mapping",
        ),
        pytest.param(
            """
            origins: {a: {targets: "http://127.0.0.1:1"}}
            routes:
              - match: {path: /a}
                proxy: a
                respond: {}
            """,
            (
                3,
                "routes[0]",
                "a route needs exactly one action of proxy, redirect, respond, site "
                "(found: proxy, respond)",
            ),
            id="model-validator",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                headers:
                  request:
                    add: {X-Count: 5}
            """,
            (5, "routes[0].headers.request.add.X-Count", "expected a string or a list, got 5"),
            id="union-no-arm-matches",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                headers:
                  request:
                    add: {X-Count: [a, 5]}
            """,
            (5, "routes[0].headers.request.add.X-Count[1]", "expected a string, got 5"),
            id="union-deepest-arm-wins",
        ),
        # Whole-file checks
        pytest.param(
            """
            origins:
              hotels: {targets: http://127.0.0.1:9001}
              pets: {targets: http://127.0.0.1:9002}
            routes:
              - match: {path: /hotels}
                proxy: hotles
            """,
            (
                6,
                "routes[0].proxy",
                "origin 'hotles' is not defined (known: hotels, pets); did you mean 'hotels'?",
            ),
            id="undefined-origin-close-match",
        ),
        pytest.param(
            """
            origins:
              hotels: {targets: http://127.0.0.1:9001}
            routes:
              - proxy: zoo
            """,
            (4, "routes[0].proxy", "origin 'zoo' is not defined (known: hotels)"),
            id="undefined-origin",
        ),
        pytest.param(
            """
            routes:
              - proxy: zoo
            """,
            (2, "routes[0].proxy", "origin 'zoo' is not defined (known: none are defined)"),
            id="undefined-origin-none-defined",
        ),
        pytest.param(
            """
            sites:
              demo: {}
            routes:
              - match: {path: /}
                site: dmeo
            """,
            (
                5,
                "routes[0].site",
                "site 'dmeo' is not defined (known: demo); did you mean 'demo'?",
            ),
            id="undefined-site",
        ),
        pytest.param(
            """
            objects:
              namespaces:
                COUNTER:
                  class: counter.py:Counter
                  sites:
                    - blog
            """,
            (
                6,
                "objects.namespaces.COUNTER.sites[0]",
                "site 'blog' is not defined (known: none are defined)",
            ),
            id="object-namespace-undefined-site",
        ),
        pytest.param(
            """
            sites:
              demo:
                env:
                  preview: {ASSETS: /static}
            """,
            (
                4,
                "sites.demo.env.preview.ASSETS",
                "variable 'ASSETS' has the name of a binding handlers see in env (ASSETS)",
            ),
            id="site-variable-named-like-a-binding",
        ),
        pytest.param(
            """
            objects:
              namespaces:
                COUNTER: counter.py:Counter
            routes:
              - respond: {}
                handler:
                  function: auth.py:check
                  env: {COUNTER: "3"}
            """,
            (8, "routes[0].handler.env.COUNTER", "variable 'COUNTER' has the name of a binding"),
            id="route-handler-variable-named-like-a-binding",
        ),
        pytest.param(
            """
            routes:
              - respond: {}
                handler: auth.js:check
            """,
            (3, "routes[0].handler", "'auth.js:check' is not path/to/module.py or"),
            id="handler-not-a-python-file",
        ),
        pytest.param(
            """
            objects:
              jurisdictions:
                EU: {shards: 2}
            """,
            (3, "objects.jurisdictions.EU", "EU"),
            id="jurisdiction-name",
        ),
        # Environment
        pytest.param(
            """
            origins:
              api:
                targets: "http://${API_HOST}:9000"
            """,
            (
                3,
                "origins.api.targets",
                "environment variable 'API_HOST' is not set "
                "(give a default with ${API_HOST:-value})",
            ),
            id="undefined-variable",
        ),
        pytest.param(
            """
            server:
              listen: "127.0.0.1:${PORT"
            """,
            (
                2,
                "server.listen",
                "malformed reference '${PORT': write ${NAME} or "
                "${NAME:-default}, or $${ for a literal '${'",
            ),
            id="unclosed-reference",
        ),
        pytest.param(
            """
            server:
              listen: "${1HOST}:80"
            """,
            (2, "server.listen", "malformed reference '${1HOST}'"),
            id="bad-variable-name",
        ),
        pytest.param(
            """
            server:
              listen: "${HOST:-${FALLBACK}}:80"
            """,
            (2, "server.listen", "malformed reference '${HOST:-${FALLBACK}'"),
            id="nested-reference",
        ),
    ],
)
def test_one_error(text: str, expected: tuple[int, str, str]) -> None:
    line, path, message = expected
    issues = issues_of(text)

    assert [(issue.file, issue.line, issue.path) for issue in issues] == [
        ("rules.yaml", line, path)
    ]
    assert message in issues[0].message


def test_misspelt_required_key_is_unknown_and_missing() -> None:
    text = """
    origins:
      hotels:
        tagets: http://127.0.0.1:9001
    """
    issues = issues_of(text)

    assert [(issue.line, issue.path, issue.message) for issue in issues] == [
        (2, "origins.hotels.targets", "missing required key 'targets'"),
        (3, "origins.hotels.tagets", "unknown key 'tagets'; did you mean 'targets'?"),
    ]


def test_str_names_file_line_path_and_fix() -> None:
    text = """
    origins:
      hotels:
        targets: http://127.0.0.1:9001
      pets:
        targets: http://127.0.0.1:9002
    routes:
      - match: {path: /a}
        proxy: hotels
      - match: {path: /b}
        proxy: pets
      - match: {path: /c}
        respond: {body: c}
      - match: {path: /d}
        proxy: hotles
    """
    with pytest.raises(ConfigError) as caught:
        parse(text)

    assert str(caught.value) == (
        "rules.yaml:14: routes[3].proxy: origin 'hotles' is not defined (known: hotels, pets);"
        " did you mean 'hotels'?"
    )


def test_every_problem_is_reported_in_line_order() -> None:
    text = """
    server:
      listen: nowhere
      colour: blue
    origins:
      hotels:
        targets: "${HOTELS_URL}"
        balancing: fastest
      hotels:
        targets: http://127.0.0.1:9002
    routes:
      - proxy: hotels
      - respond: {status: 999}
      - redirect: {to: /x, status: 200}
    """
    issues = issues_of(text)

    assert [(issue.line, issue.path) for issue in issues] == [
        (2, "server.listen"),
        (3, "server.colour"),
        (6, "origins.hotels.targets"),
        (7, "origins.hotels.balancing"),
        (8, "origins.hotels"),
        (12, "routes[1].respond.status"),
        (13, "routes[2].redirect.status"),
    ]
    assert "HOTELS_URL" in issues[2].message
    assert "duplicate key 'hotels' (first on line 5)" in issues[4].message


def test_structure_and_whole_file_problems_are_reported_together() -> None:
    text = """
    origins:
      hotels: {targets: http://127.0.0.1:9001}
      hotels: {targets: http://127.0.0.1:9002}
    routes:
      - proxy: hotles
    """
    issues = issues_of(text)

    assert [(issue.line, issue.path) for issue in issues] == [
        (3, "origins.hotels"),
        (5, "routes[0].proxy"),
    ]


def test_tied_routes_carry_file_and_line() -> None:
    text = """
    routes:
      - match: {host: api.example.com, path: /v1}
        respond: {body: one}
      - match: {host: other.example.com, path: /v1}
        respond: {body: other}
      - match: {host: api.example.com, path: /v1}
        respond: {body: two}
      - respond: {body: any}
      - redirect: {to: /}
    """
    issues = issues_of(text)

    assert [(issue.file, issue.line, issue.path) for issue in issues] == [
        ("rules.yaml", 6, "routes[2].match"),
        # routes[4] writes no `match`, so the line is that of the route.
        ("rules.yaml", 9, "routes[4].match"),
    ]
    assert "routes[0]" in issues[0].message
    assert "routes[3]" in issues[1].message


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param(
            'server: {listen: "127.0.0.1:${PORT:-8080}"}',
            {},
            {"listen": "127.0.0.1:8080"},
            id="default-when-unset",
        ),
        pytest.param(
            'server: {listen: "127.0.0.1:${PORT:-8080}"}',
            {"PORT": ""},
            {"listen": "127.0.0.1:8080"},
            id="default-when-empty",
        ),
        pytest.param(
            'server: {listen: "${HOST}:${PORT:-8080}"}',
            {"HOST": "0.0.0.0", "PORT": "9000"},
            {"listen": "0.0.0.0:9000"},
            id="set-wins-over-default",
        ),
        pytest.param(
            'server: {state_dir: "${DIR:-}"}',
            {},
            {"state_dir": ""},
            id="empty-default",
        ),
        pytest.param(
            'server: {state_dir: "$${HOME}/x and $HOME and $$ and ${HOME}"}',
            {"HOME": "/root"},
            {"state_dir": "${HOME}/x and $HOME and $$ and /root"},
            id="escape-and-lone-dollars",
        ),
        pytest.param(
            "server: {state_dir: '${DIR}'}",
            {"DIR": "${NOT_EXPANDED_AGAIN}"},
            {"state_dir": "${NOT_EXPANDED_AGAIN}"},
            id="values-are-not-re-expanded",
        ),
        pytest.param(
            """
            server:
              max_body_size: ${SIZE:-1KiB}
              access_log: ${LOG:-false}
              timeouts: {shutdown: "${GRACE:-250ms}"}
            """,
            {},
            {"max_body_size": 1024, "access_log": False, "timeouts": {"shutdown": 0.25}},
            id="units-and-bool-coerced",
        ),
    ],
)
def test_environment_interpolation(
    text: str, environ: dict[str, str], expected: dict[str, object]
) -> None:
    server = parse(text, environ).server.model_dump()

    for key, value in expected.items():
        if isinstance(value, dict):
            assert {name: server[key][name] for name in value} == value
        else:
            assert server[key] == value


def test_interpolated_numbers_validate_as_numbers() -> None:
    text = """
    origins:
      api:
        targets: "http://${API_HOST:-127.0.0.1}:${API_PORT:-9000}"
        retries: ${RETRIES:-2}
        health_check: {expect_status: "${HEALTHY:-204}"}
    routes:
      - match: {path: /moved}
        redirect: {to: /new, status: "${MOVED:-301}"}
      - match: {path: /teapot}
        respond: {status: "${TEAPOT}"}
    """
    config = parse(text, {"TEAPOT": "418"})

    api = config.origins["api"]
    assert api.targets == ["http://127.0.0.1:9000"]
    assert api.retries == 2
    assert api.health_check is not None
    assert api.health_check.expect_status == 204
    moved, teapot = config.routes
    assert moved.redirect is not None
    assert moved.redirect.status == 301
    assert teapot.respond is not None
    assert teapot.respond.status == 418


def test_interpolated_value_is_validated() -> None:
    issues = issues_of("server: {listen: '${LISTEN}'}\n", {"LISTEN": "nowhere"})

    assert [(issue.line, issue.path) for issue in issues] == [(1, "server.listen")]
    assert "got 'nowhere'" in issues[0].message


def test_keys_are_not_interpolated() -> None:
    text = """
    routes:
      - respond: {}
        headers:
          request:
            set: {"X-${NAME}": v}
    """
    issues = issues_of(text, {"NAME": "Edge"})

    assert [(issue.line, issue.path) for issue in issues] == [(4, "routes[0].headers.request")]
    assert "not a valid header name: 'X-${NAME}'" in issues[0].message


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPROXY_TEST_PORT", "9123")

    config = parse_config('server: {listen: "127.0.0.1:${EDGEPROXY_TEST_PORT}"}')

    assert config.server.port == 9123


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml_text(FULL), encoding="utf-8")

    assert load_config(rules, environ={}) == parse(FULL)


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("server:\n  listen: nowhere\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(str(rules), environ={})

    assert str(caught.value) == (
        f"{rules}:2: server.listen: expected HOST:PORT such as 127.0.0.1:8080, got 'nowhere'"
    )


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")

    assert str(caught.value) == (
        f"{tmp_path / 'absent.yaml'}: cannot read the file: No such file or directory"
    )


def test_load_config_not_utf8(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(b"server:\n  state_dir: caf\xe9\n")

    with pytest.raises(ConfigError) as caught:
        load_config(rules)

    [issue] = caught.value.issues
    assert (issue.line, issue.path) == (2, "")
    assert "not UTF-8 text" in issue.message


def test_json_schema_describes_the_file() -> None:
    schema = config_json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "edgeproxy rules.yaml"
    assert set(schema["properties"]) == {
        "server", "origins", "routes", "sites", "admin", "cache", "objects",
    }  # fmt: skip
    # A handler may be written as just its "module.py:function" string.
    handler = schema["$defs"]["RouteHandler"]
    assert [arm.get("type") for arm in handler["anyOf"]] == ["string", "object"]
    assert "with" in schema["$defs"]["Replace"]["properties"]
    # Units are written as text in rules.yaml, so the schema must accept "250ms" and "10MiB".
    timeouts = schema["$defs"]["Timeouts"]["properties"]["shutdown"]
    assert [arm["type"] for arm in timeouts["anyOf"]] == ["number", "string"]
    size = schema["$defs"]["ServerConfig"]["properties"]["max_body_size"]
    assert [arm["type"] for arm in size["anyOf"]] == ["integer", "string"]
