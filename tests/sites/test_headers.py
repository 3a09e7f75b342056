from __future__ import annotations

import pytest

from edgeproxy.sites.headers import MAX_RULES, NO_CHANGES, HeaderChanges, HeaderRules

# The example file from Cloudflare Pages' "Headers" page.
DOCS_EXAMPLE = """\
# This is a comment
/secure/page
  X-Frame-Options: DENY
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer

/static/*
  Access-Control-Allow-Origin: *
  X-Robots-Tag: nosnippet

https://myproject.pages.dev/*
  X-Robots-Tag: noindex
"""


def changes(text: str, path: str, host: str = "") -> HeaderChanges:
    rules, warnings = HeaderRules.parse(text)
    assert warnings == []
    return rules.for_path(path, host)


@pytest.mark.parametrize(
    ("text", "path", "host", "expected"),
    [
        pytest.param(
            DOCS_EXAMPLE,
            "/secure/page",
            "custom.domain",
            HeaderChanges(
                (
                    ("x-frame-options", "DENY"),
                    ("x-content-type-options", "nosniff"),
                    ("referrer-policy", "no-referrer"),
                )
            ),
            id="single-block",
        ),
        pytest.param(
            DOCS_EXAMPLE,
            "/home",
            "myproject.pages.dev",
            HeaderChanges((("x-robots-tag", "noindex"),)),
            id="host-qualified-pattern",
        ),
        pytest.param(
            DOCS_EXAMPLE,
            "/home",
            "custom.domain",
            NO_CHANGES,
            id="host-qualified-pattern-other-host",
        ),
        pytest.param(
            DOCS_EXAMPLE,
            "/home",
            "",
            NO_CHANGES,
            id="host-qualified-pattern-without-host",
        ),
        pytest.param(
            DOCS_EXAMPLE,
            "/home",
            "MyProject.pages.dev:443",
            HeaderChanges((("x-robots-tag", "noindex"),)),
            id="host-case-and-port-ignored",
        ),
        pytest.param(
            DOCS_EXAMPLE,
            "/static/styles.css",
            "myproject.pages.dev",
            HeaderChanges(
                (
                    ("access-control-allow-origin", "*"),
                    ("x-robots-tag", "nosnippet, noindex"),
                )
            ),
            id="merge-blocks-joins-values",
        ),
        pytest.param(
            "/a\n  Cache-Control: public\n  Cache-Control: max-age=60",
            "/a",
            "",
            HeaderChanges((("cache-control", "public, max-age=60"),)),
            id="same-name-twice-in-a-block",
        ),
        pytest.param(
            "/*\n  Content-Security-Policy: default-src 'self';\n\n/*.jpg\n"
            "  ! Content-Security-Policy",
            "/photos/cat.jpg",
            "",
            HeaderChanges((), frozenset({"content-security-policy"})),
            id="detach-header",
        ),
        pytest.param(
            "/*\n  Content-Security-Policy: default-src 'self';\n\n/*.jpg\n"
            "  ! Content-Security-Policy",
            "/index.html",
            "",
            HeaderChanges((("content-security-policy", "default-src 'self';"),)),
            id="detach-only-where-matched",
        ),
        pytest.param(
            "/*\n  ! Server\n/api/*\n  Server: edge",
            "/api/x",
            "",
            HeaderChanges((("server", "edge"),), frozenset({"server"})),
            id="detach-then-set-again",
        ),
        pytest.param(
            '/movies/:title\n  x-movie-name: You are watching ":title"',
            "/movies/up",
            "",
            HeaderChanges((("x-movie-name", 'You are watching "up"'),)),
            id="placeholder-in-value",
        ),
        pytest.param(
            '/about/faq/*\n  Link: </about/faqs/:splat>; rel="canonical"',
            "/about/faq/billing/cards",
            "",
            HeaderChanges((("link", '</about/faqs/billing/cards>; rel="canonical"'),)),
            id="splat-in-value",
        ),
        pytest.param(
            "https://:project.pages.dev/*\n"
            "  Access-Control-Allow-Origin: https://staging.:project.pages.dev/",
            "/x",
            "shop.pages.dev",
            HeaderChanges((("access-control-allow-origin", "https://staging.shop.pages.dev/"),)),
            id="host-placeholder-in-value",
        ),
        pytest.param(
            "/a/:id\n  X-Id: :id :other",
            "/a/7",
            "",
            HeaderChanges((("x-id", "7 :other"),)),
            id="unknown-placeholder-stays-literal",
        ),
        pytest.param(
            "/a\n  Set-Cookie: a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT\n/*\n  Set-Cookie: b=2",
            "/a",
            "",
            HeaderChanges(
                (
                    ("set-cookie", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
                    ("set-cookie", "b=2"),
                )
            ),
            id="set-cookie-values-stay-separate",
        ),
        pytest.param(
            "/docs\n  X-A: 1",
            "/docs/",
            "",
            NO_CHANGES,
            id="trailing-slash-is-exact",
        ),
        pytest.param(
            "/Docs\n  X-A: 1",
            "/docs",
            "",
            NO_CHANGES,
            id="paths-are-case-sensitive",
        ),
        pytest.param(
            "/café\n  X-A: 1",
            "/caf%C3%A9",
            "",
            HeaderChanges((("x-a", "1"),)),
            id="unicode-pattern-matches-encoded-path",
        ),
        pytest.param(
            "/a\n\tX-Tabbed:\tvalue with: colon  ",
            "/a",
            "",
            HeaderChanges((("x-tabbed", "value with: colon"),)),
            id="value-keeps-later-colons",
        ),
        pytest.param(
            "/a\nX-Unindented: yes",
            "/a",
            "",
            HeaderChanges((("x-unindented", "yes"),)),
            id="indentation-optional",
        ),
    ],
)
def test_for_path(text: str, path: str, host: str, expected: HeaderChanges) -> None:
    assert changes(text, path, host) == expected


@pytest.mark.parametrize(
    ("text", "warnings", "blocks"),
    [
        pytest.param(
            "# only comments\n\n   \n# here\n/a\n  X-A: 1\n  Bad Name: 2",
            ["_headers:7: skipped: 'Bad Name' is not a valid header name"],
            1,
            id="comment-and-blank-lines",
        ),
        pytest.param(
            "X-A: 1\n/a\n  X-B: 2",
            ["_headers:1: skipped: header line before any URL pattern"],
            1,
            id="header-before-pattern",
        ),
        pytest.param(
            "/a\n  X-A:\n  X-B: 2",
            ["_headers:2: skipped: header 'X-A' has no value"],
            1,
            id="empty-value",
        ),
        pytest.param(
            "/a\n  just text\n  X-B: 2",
            ["_headers:2: skipped: expected 'Name: value' or '! Name'"],
            1,
            id="missing-colon",
        ),
        pytest.param(
            "/a\n  X-A: one\rtwo\n  X-B: 2",
            ["_headers:2: skipped: header 'X-A' value has a control or non-Latin-1 character"],
            1,
            id="carriage-return-in-value",
        ),
        pytest.param(
            "/a\n  X-A: nul\x00\n  X-B: 2",
            ["_headers:2: skipped: header 'X-A' value has a control or non-Latin-1 character"],
            1,
            id="nul-in-value",
        ),
        pytest.param(
            "/a\n  X-A: 日本\n  X-B: 2",
            ["_headers:2: skipped: header 'X-A' value has a control or non-Latin-1 character"],
            1,
            id="non-latin-1-value",
        ),
        pytest.param(
            "/a\n  ! Bad Name\n  X-B: 2",
            ["_headers:2: skipped: 'Bad Name' is not a valid header name to detach"],
            1,
            id="invalid-detach-name",
        ),
        pytest.param(
            "/a\n/b\n  X-B: 2",
            ["_headers:1: skipped: no headers under this URL pattern"],
            1,
            id="pattern-without-headers",
        ),
        pytest.param(
            "/*/x/*\n  X-A: 1\n  X-B: 2\n/b\n  X-C: 3",
            [
                "_headers:1: skipped: '/*/x/*' has more than one splat (only one is allowed), "
                "with the header lines under it"
            ],
            1,
            id="bad-pattern-skips-its-block",
        ),
        pytest.param(
            "https://example.com:8443/*\n  X-A: 1",
            [
                "_headers:1: skipped: 'https://example.com:8443/*' names a port; patterns "
                "match any port, with the header lines under it"
            ],
            0,
            id="port-in-pattern",
        ),
        pytest.param(
            f"/a\n  X-A: {'v' * 2000}\n  X-B: 2",
            ["_headers:2: skipped: line is 2,005 characters long (limit 2,000)"],
            1,
            id="too-long-line",
        ),
        pytest.param(
            f"/{'p' * 2000}\n  X-A: 1\n/b\n  X-B: 2",
            [
                "_headers:1: skipped: line is 2,001 characters long (limit 2,000), "
                "with the header lines under it"
            ],
            1,
            id="too-long-pattern-skips-its-block",
        ),
    ],
)
def test_parse_warnings(text: str, warnings: list[str], blocks: int) -> None:
    rules, found = HeaderRules.parse(text)
    assert found == warnings
    assert len(rules) == blocks


def test_rule_limit() -> None:
    text = "\n".join(f"/p{n}\n  X-N: {n}" for n in range(MAX_RULES + 2))
    rules, warnings = HeaderRules.parse(text)
    assert len(rules) == MAX_RULES
    assert warnings == [
        f"_headers:{2 * MAX_RULES + 1}: skipped: more than 100 rules (the Cloudflare Pages "
        "limit); this and the remaining lines are ignored"
    ]
    assert rules.for_path(f"/p{MAX_RULES - 1}") == HeaderChanges((("x-n", "99"),))


def test_bom_and_crlf() -> None:
    rules, warnings = HeaderRules.parse("\ufeff/a\r\n  X-A: 1\r\n")
    assert warnings == []
    assert rules.for_path("/a") == HeaderChanges((("x-a", "1"),))


@pytest.mark.parametrize(
    ("change", "headers", "expected"),
    [
        pytest.param(
            NO_CHANGES,
            [(b"content-type", b"text/html")],
            [(b"content-type", b"text/html")],
            id="no-changes",
        ),
        pytest.param(
            HeaderChanges((("x-frame-options", "DENY"),)),
            [(b"content-type", b"text/html")],
            [(b"content-type", b"text/html"), (b"x-frame-options", b"DENY")],
            id="adds",
        ),
        pytest.param(
            HeaderChanges((("cache-control", "no-store"),)),
            [(b"Cache-Control", b"max-age=60"), (b"etag", b'"1"'), (b"cache-control", b"x")],
            [(b"etag", b'"1"'), (b"cache-control", b"no-store")],
            id="replaces-any-case",
        ),
        pytest.param(
            HeaderChanges((), frozenset({"server", "x-powered-by"})),
            [(b"server", b"origin"), (b"date", b"now"), (b"X-Powered-By", b"php")],
            [(b"date", b"now")],
            id="removes",
        ),
        pytest.param(
            HeaderChanges((("set-cookie", "a=1"), ("set-cookie", "b=2"))),
            [(b"set-cookie", b"old=1")],
            [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
            id="set-cookie-lines",
        ),
    ],
)
def test_apply(
    change: HeaderChanges,
    headers: list[tuple[bytes, bytes]],
    expected: list[tuple[bytes, bytes]],
) -> None:
    before = list(headers)
    result = change.apply(headers)
    assert result == expected
    assert result is not headers
    assert headers == before
