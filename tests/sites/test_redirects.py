from __future__ import annotations

import pytest

from edgeproxy.sites.patterns import Dialect
from edgeproxy.sites.redirects import (
    MAX_DYNAMIC_RULES,
    MAX_STATIC_RULES,
    RedirectRule,
    RedirectRules,
)

# (line, location, status, is_rewrite, is_proxy, force)
Found = tuple[int, str, int, bool, bool, bool] | None


def found(
    dialect: Dialect, text: str, path: str, query: bytes = b"", host: str = "site.example"
) -> Found:
    rules, warnings = RedirectRules.parse(text, dialect)
    assert warnings == []
    match = rules.match(host, path, query)
    if match is None:
        return None
    assert match.status == match.rule.status
    return (
        match.rule.line,
        match.location,
        match.status,
        match.is_rewrite,
        match.is_proxy,
        match.force,
    )


@pytest.mark.parametrize(
    ("dialect", "text", "path", "query", "expected"),
    [
        pytest.param(
            "cloudflare",
            "/news/* /blog/:splat",
            "/news/2004/01/10/my-story",
            b"",
            (1, "/blog/2004/01/10/my-story", 302, False, False, True),
            id="splat-to-splat",
        ),
        pytest.param(
            "netlify",
            "/news/* /blog/:splat",
            "/news/2004/01/10/my-story",
            b"",
            (1, "/blog/2004/01/10/my-story", 301, False, False, False),
            id="netlify-splat-to-splat",
        ),
        pytest.param(
            "cloudflare",
            "/movies/:title /media/:title",
            "/movies/up",
            b"",
            (1, "/media/up", 302, False, False, True),
            id="placeholder-segment",
        ),
        pytest.param(
            "cloudflare",
            "/movies/:title /media/:title",
            "/movies/up/extra",
            b"",
            None,
            id="placeholder-stops-at-slash",
        ),
        pytest.param(
            "cloudflare",
            "/blog/:slug.html /posts/:slug",
            "/blog/hello.world.html",
            b"",
            (1, "/posts/hello.world", 302, False, False, True),
            id="cloudflare-placeholder-inside-segment",
        ),
        pytest.param(
            "cloudflare",
            "/:year/:month/:day/:slug /news-:year-:month-:day/:slug",
            "/2024/05/17/story",
            b"",
            (1, "/news-2024-05-17/story", 302, False, False, True),
            id="placeholders-joined-in-destination",
        ),
        pytest.param(
            "cloudflare",
            "/*.jpg /images/:splat.jpg",
            "/a/b.jpg",
            b"",
            (1, "/images/a/b.jpg", 302, False, False, True),
            id="cloudflare-splat-mid-path",
        ),
        pytest.param(
            "cloudflare",
            "/docs/*/edit /edit/:splat",
            "/docs/a/b/edit",
            b"",
            (1, "/edit/a/b", 302, False, False, True),
            id="cloudflare-splat-spans-segments",
        ),
        pytest.param(
            "netlify",
            "/blog/* /first\n/blog/post /second",
            "/blog/post",
            b"",
            (1, "/first", 301, False, False, False),
            id="first-match-wins",
        ),
        pytest.param(
            "cloudflare",
            "/blog/post /second\n/blog/* /first",
            "/blog/post",
            b"",
            (1, "/second", 302, False, False, True),
            id="static-rule-first-in-file-wins",
        ),
        pytest.param(
            "cloudflare",
            "/a /one\n/b/* /two\n/c /three",
            "/c",
            b"",
            (3, "/three", 302, False, False, True),
            id="static-rule-after-dynamic-rule",
        ),
        pytest.param(
            "netlify",
            "/home /",
            "/home",
            b"",
            (1, "/", 301, False, False, False),
            id="netlify-default-301",
        ),
        pytest.param(
            "cloudflare",
            "/home /",
            "/home",
            b"",
            (1, "/", 302, False, False, True),
            id="cloudflare-default-302",
        ),
        pytest.param(
            "cloudflare",
            "/old /new 308",
            "/old",
            b"",
            (1, "/new", 308, False, False, True),
            id="explicit-status",
        ),
        pytest.param(
            "netlify",
            "/app/* /app/index.html 200!",
            "/app/settings",
            b"",
            (1, "/app/index.html", 200, True, False, True),
            id="force-flag",
        ),
        pytest.param(
            "netlify",
            "/app/* /app/index.html 200",
            "/app/settings",
            b"",
            (1, "/app/index.html", 200, True, False, False),
            id="netlify-rewrite-not-forced",
        ),
        pytest.param(
            "cloudflare",
            "/users/* /users/id.html 200",
            "/users/12345",
            b"",
            (1, "/users/id.html", 200, True, False, True),
            id="cloudflare-rewrite-200",
        ),
        pytest.param(
            "netlify",
            "/en/* /en/404.html 404",
            "/en/missing",
            b"",
            (1, "/en/404.html", 404, True, False, False),
            id="netlify-custom-404-rewrite",
        ),
        pytest.param(
            "netlify",
            "/gone /gone.html 410",
            "/gone",
            b"",
            (1, "/gone.html", 410, True, False, False),
            id="netlify-410-rewrite",
        ),
        pytest.param(
            "netlify",
            "/api/* https://api.example.com/:splat 200",
            "/api/users/7",
            b"page=2",
            (1, "https://api.example.com/users/7?page=2", 200, False, True, False),
            id="proxy-absolute-200",
        ),
        pytest.param(
            "netlify",
            "/twitch https://twitch.tv 302",
            "/twitch",
            b"",
            (1, "https://twitch.tv", 302, False, False, False),
            id="external-redirect",
        ),
        pytest.param(
            "netlify",
            "/store id=:id /blog/:id 301",
            "/store",
            b"id=my-blog-post&utm_source=x",
            (1, "/blog/my-blog-post", 301, False, False, False),
            id="query-param-condition",
        ),
        pytest.param(
            "netlify",
            "/store id=:id /blog/:id 301",
            "/store",
            b"utm_source=x",
            None,
            id="query-param-missing",
        ),
        pytest.param(
            "netlify",
            "/store id=:id /blog/:id 301",
            "/store",
            b"id=",
            None,
            id="query-param-empty-value",
        ),
        pytest.param(
            "netlify",
            "/articles id=:id tag=:tag /posts/:tag/:id 301",
            "/articles",
            b"tag=news&id=7",
            (1, "/posts/news/7", 301, False, False, False),
            id="query-params-any-order",
        ),
        pytest.param(
            "netlify",
            "/store id=42 /answer\n/store /shop",
            "/store",
            b"id=42",
            (1, "/answer", 301, False, False, False),
            id="query-param-literal-value",
        ),
        pytest.param(
            "netlify",
            "/store id=42 /answer\n/store /shop",
            "/store",
            b"id=43",
            (2, "/shop?id=43", 301, False, False, False),
            id="query-param-literal-mismatch-falls-through",
        ),
        pytest.param(
            "netlify",
            "/search q=:q /find/:q?src=old",
            "/search",
            b"q=caf%C3%A9&q=second",
            (1, "/find/caf%C3%A9?src=old", 301, False, False, False),
            id="query-capture-first-value-stays-encoded",
        ),
        pytest.param(
            "netlify",
            "/old /new",
            "/old",
            b"a=1&b=2",
            (1, "/new?a=1&b=2", 301, False, False, False),
            id="query-passed-through",
        ),
        pytest.param(
            "cloudflare",
            "/old /new",
            "/old",
            b"a=1",
            (1, "/new?a=1", 302, False, False, True),
            id="cloudflare-query-passed-through",
        ),
        pytest.param(
            "cloudflare",
            "/querystrings /?query=string 301",
            "/querystrings",
            b"a=1",
            (1, "/?query=string", 301, False, False, True),
            id="destination-query-wins",
        ),
        pytest.param(
            "cloudflare",
            "/products/:code/:name /products?code=:code&name=:name",
            "/products/7/hat",
            b"",
            (1, "/products?code=7&name=hat", 302, False, False, True),
            id="placeholders-in-destination-query",
        ),
        pytest.param(
            "cloudflare",
            "/page/ /page2/#fragment 301",
            "/page/",
            b"a=1",
            (1, "/page2/?a=1#fragment", 301, False, False, True),
            id="fragment-stays-last",
        ),
        pytest.param(
            "netlify",
            "/about /about-us",
            "/about/",
            b"",
            (1, "/about-us", 301, False, False, False),
            id="netlify-trailing-slash-request",
        ),
        pytest.param(
            "netlify",
            "/about/ /about-us",
            "/about",
            b"",
            (1, "/about-us", 301, False, False, False),
            id="netlify-trailing-slash-rule",
        ),
        pytest.param(
            "netlify",
            "/movies/:title /media/:title",
            "/movies/up/",
            b"",
            (1, "/media/up", 301, False, False, False),
            id="netlify-trailing-slash-placeholder",
        ),
        pytest.param(
            "netlify",
            "/app/* /x/:splat",
            "/app",
            b"",
            (1, "/x/", 301, False, False, False),
            id="netlify-splat-covers-bare-directory",
        ),
        pytest.param(
            "netlify",
            "/app/* /x/:splat",
            "/app/a/b/",
            b"",
            (1, "/x/a/b/", 301, False, False, False),
            id="netlify-splat-keeps-trailing-slash",
        ),
        pytest.param(
            "netlify",
            "/* /index.html 200",
            "/",
            b"",
            (1, "/index.html", 200, True, False, False),
            id="netlify-spa-fallback-root",
        ),
        pytest.param(
            "cloudflare",
            "/trailing /trailing/ 301",
            "/trailing/",
            b"",
            None,
            id="cloudflare-trailing-slash-exact",
        ),
        pytest.param(
            "cloudflare",
            "/blog/* /posts/:splat",
            "/blog",
            b"",
            None,
            id="cloudflare-splat-needs-slash",
        ),
        pytest.param(
            "netlify",
            "/About /x",
            "/about",
            b"",
            None,
            id="paths-are-case-sensitive",
        ),
        pytest.param(
            "netlify",
            "https://blog.example.com/* https://example.com/blog/:splat 301!",
            "/post",
            b"",
            None,
            id="host-qualified-source-other-host",
        ),
        pytest.param(
            "cloudflare",
            "/a/:x /b/:y/:x/:splat",
            "/a/1",
            b"",
            (1, "/b/:y/1/:splat", 302, False, False, True),
            id="unknown-placeholders-left-literally",
        ),
        pytest.param(
            "netlify",
            "/authors/céline /about-c%c3%a9line",
            "/authors/c%C3%A9line",
            b"",
            (1, "/about-c%c3%a9line", 301, False, False, False),
            id="unicode-source-matches-encoded-path",
        ),
        pytest.param(
            "netlify",
            "/%7Euser/:page /u/:page",
            "/~user/x",
            b"",
            (1, "/u/x", 301, False, False, False),
            id="unreserved-escape-in-source-decoded",
        ),
        pytest.param(
            "cloudflare",
            "/menu /café",
            "/menu",
            b"",
            (1, "/caf%C3%A9", 302, False, False, True),
            id="unicode-destination-encoded",
        ),
        pytest.param(
            "cloudflare",
            "/old-page /new-page 301 # moved during the redesign",
            "/old-page",
            b"",
            (1, "/new-page", 301, False, False, True),
            id="inline-comment",
        ),
        pytest.param(
            "cloudflare",
            "home /",
            "/home",
            b"",
            (1, "/", 302, False, False, True),
            id="cloudflare-source-without-slash",
        ),
        pytest.param(
            "netlify",
            "/s q=:q /r/:q\n/s /fallback?safe=1",
            "/s",
            b"q=a\rb",
            (2, "/fallback?safe=1", 301, False, False, False),
            id="unsafe-location-skips-rule",
        ),
        pytest.param(
            "cloudflare",
            "/a /b",
            "/a",
            b"x=\n",
            None,
            id="unsafe-query-never-passed-through",
        ),
    ],
)
def test_match(dialect: Dialect, text: str, path: str, query: bytes, expected: Found) -> None:
    assert found(dialect, text, path, query) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("blog.example.com", "https://example.com/blog/post", id="host-qualified"),
        pytest.param("BLOG.example.com:8443", "https://example.com/blog/post", id="host-any-case"),
        pytest.param("www.example.com", "/general/post", id="other-host-falls-through"),
        pytest.param("", "/general/post", id="no-host"),
    ],
)
def test_host_qualified_pattern(host: str, expected: str) -> None:
    text = (
        "http://blog.example.com/* https://example.com/blog/:splat 301!\n"
        "https://blog.example.com/* https://example.com/blog/:splat 301!\n"
        "/* /general/:splat"
    )
    rules, warnings = RedirectRules.parse(text, "netlify")
    assert warnings == []
    match = rules.match(host, "/post", b"")
    assert match is not None
    assert match.location == expected


def test_host_qualified_static_rule_keeps_file_order() -> None:
    text = "/about /general\nhttps://blog.example.com/about /blog-about"
    rules, _ = RedirectRules.parse(text, "netlify")
    match = rules.match("blog.example.com", "/about", b"")
    assert match is not None
    assert match.rule.line == 1


def test_rule_keeps_what_was_written() -> None:
    text = "\n# header\n/store  id=:id  /blog/:id  301!\n"
    rules, warnings = RedirectRules.parse(text, "netlify")
    assert warnings == []
    assert len(rules) == 1
    match = rules.match("h", "/store", b"id=1")
    assert match is not None
    assert match.rule == RedirectRule(
        line=3,
        source="/store",
        destination="/blog/:id",
        status=301,
        force=True,
        query=(("id", ":id"),),
    )


@pytest.mark.parametrize(
    ("dialect", "text", "warning"),
    [
        pytest.param(
            "cloudflare",
            "/a /b\n/x /y 299",
            "_redirects:2: skipped: invalid status code '299' "
            "(accepted: 200, 301, 302, 303, 307, 308)",
            id="invalid-status-warns-with-line",
        ),
        pytest.param(
            "netlify",
            "/x /y 299",
            "_redirects:1: skipped: invalid status code '299' "
            "(accepted: 200, 301, 302, 303, 307, 308, 404, 410, 451, optionally followed by '!')",
            id="netlify-invalid-status",
        ),
        pytest.param(
            "cloudflare",
            "/x /y 301!",
            "_redirects:1: skipped: invalid status code '301!' "
            "(accepted: 200, 301, 302, 303, 307, 308); the '!' suffix is Netlify syntax, "
            "Cloudflare Pages rules always apply",
            id="cloudflare-force-suffix",
        ),
        pytest.param(
            "cloudflare",
            "/blog/* /blog/404.html 404",
            "_redirects:1: skipped: invalid status code '404' "
            "(accepted: 200, 301, 302, 303, 307, 308)",
            id="cloudflare-has-no-404-rewrites",
        ),
        pytest.param(
            "cloudflare",
            "# one\n\n   \n# two\n/only-source",
            "_redirects:5: skipped: missing destination: a path starting with '/' or an "
            "http(s):// URL",
            id="comment-and-blank-lines",
        ),
        pytest.param(
            "netlify",
            "/a 301",
            "_redirects:1: skipped: missing destination: a path starting with '/' or an "
            "http(s):// URL (found '301')",
            id="netlify-missing-destination",
        ),
        pytest.param(
            "cloudflare",
            "/a b",
            "_redirects:1: skipped: destination 'b' must be a path starting with '/' or an "
            "http(s):// URL",
            id="relative-destination",
        ),
        pytest.param(
            "netlify",
            "/ /anz 302 Country=au,nz",
            "_redirects:1: skipped: conditions (Country=au,nz) are not supported",
            id="netlify-conditions-unsupported",
        ),
        pytest.param(
            "netlify",
            "/admin/* /admin/:splat 200! Role=admin",
            "_redirects:1: skipped: conditions (Role=admin) are not supported",
            id="netlify-role-unsupported",
        ),
        pytest.param(
            "netlify",
            "/x /y Language=he",
            "_redirects:1: skipped: conditions (Language=he) are not supported",
            id="netlify-condition-without-status",
        ),
        pytest.param(
            "netlify",
            "/x /y 301 302",
            "_redirects:1: skipped: unexpected text after the status code: '302'",
            id="extra-field",
        ),
        pytest.param(
            "netlify",
            "/path foo /foo.html 200",
            "_redirects:1: skipped: query condition 'foo' must be key=value or key=:name",
            id="netlify-bare-query-key",
        ),
        pytest.param(
            "netlify",
            "/p/:id id=:id /q/:id",
            "_redirects:1: skipped: placeholder :id is used more than once",
            id="query-capture-reuses-path-name",
        ),
        pytest.param(
            "cloudflare",
            "/shop id=:id /blog/:id 301",
            "_redirects:1: skipped: query-parameter conditions (id=:id) are Netlify syntax, "
            "not supported by Cloudflare Pages",
            id="cloudflare-query-conditions",
        ),
        pytest.param(
            "cloudflare",
            "/blog/* https://blog.example.com/:splat 200",
            "_redirects:1: skipped: a 200 rule must point to a path on this site; Cloudflare "
            "Pages cannot proxy to 'https://blog.example.com/:splat'",
            id="cloudflare-cannot-proxy-to-host",
        ),
        pytest.param(
            "cloudflare",
            "https://a.example.com/* /b/:splat",
            "_redirects:1: skipped: 'https://a.example.com/*' has a host; only a path is "
            "accepted here",
            id="cloudflare-host-source",
        ),
        pytest.param(
            "netlify",
            "https://a.example.com:8443/* /b",
            "_redirects:1: skipped: 'https://a.example.com:8443/*' names a port; patterns "
            "match any port",
            id="host-source-with-port",
        ),
        pytest.param(
            "cloudflare",
            "/*/x/* /y",
            "_redirects:1: skipped: '/*/x/*' has more than one splat (only one is allowed)",
            id="two-splats",
        ),
        pytest.param(
            "cloudflare",
            "/:year-:month /y",
            "_redirects:1: skipped: '/:year-:month' has two captures in one path segment",
            id="two-captures-in-a-segment",
        ),
        pytest.param(
            "cloudflare",
            "/a/:x-* /y",
            "_redirects:1: skipped: '/a/:x-*' has two captures in one path segment",
            id="placeholder-and-splat-in-a-segment",
        ),
        pytest.param(
            "netlify",
            "/blog/:slug.html /y",
            "_redirects:1: skipped: '/blog/:slug.html': a Netlify placeholder must fill a "
            "whole path segment",
            id="netlify-placeholder-part-of-segment",
        ),
        pytest.param(
            "netlify",
            "/*.jpg /y",
            "_redirects:1: skipped: '/*.jpg': a Netlify splat must end the path",
            id="netlify-splat-not-last",
        ),
        pytest.param(
            "cloudflare",
            "/a/:x/:x /y",
            "_redirects:1: skipped: placeholder :x is used more than once",
            id="placeholder-twice",
        ),
        pytest.param(
            "cloudflare",
            "/a%zz /y",
            "_redirects:1: skipped: '/a%zz' has a malformed percent-escape",
            id="malformed-escape",
        ),
        pytest.param(
            "netlify",
            "/store?id=1 /y",
            "_redirects:1: skipped: '/store?id=1' has a query string; patterns match the path only",
            id="query-in-source",
        ),
        pytest.param(
            "cloudflare",
            "/a /b\x00c",
            "_redirects:1: skipped: destination '/b\\x00c' contains a control character",
            id="control-character-in-destination",
        ),
        pytest.param(
            "cloudflare",
            "/a /one\n/a /two",
            "_redirects:2: skipped: never matches, line 1 has the same source "
            "(the first match wins)",
            id="duplicate-source",
        ),
        pytest.param(
            "netlify",
            "/a /one\n/a/ /two",
            "_redirects:2: skipped: never matches, line 1 has the same source "
            "(the first match wins)",
            id="netlify-duplicate-modulo-trailing-slash",
        ),
        pytest.param(
            "cloudflare",
            f"/a /b\n/{'x' * 2000} /y",
            "_redirects:2: skipped: line is 2,004 characters long (limit 2,000)",
            id="too-long-line",
        ),
    ],
)
def test_parse_warnings(dialect: Dialect, text: str, warning: str) -> None:
    rules, warnings = RedirectRules.parse(text, dialect)
    assert warnings == [warning]
    written = [line for line in text.split("\n") if line.strip() and not line.startswith("#")]
    assert len(rules) == len(written) - 1


@pytest.mark.parametrize(
    ("dialect", "text", "count"),
    [
        pytest.param("cloudflare", "/a /b\n/a/ /c", 2, id="cloudflare-trailing-slash-distinct"),
        pytest.param(
            "netlify",
            "/store id=:id /a\n/store /b\n/store tag=:t /c",
            3,
            id="netlify-query-conditions-make-rules-distinct",
        ),
        pytest.param(
            "netlify",
            "http://x.example/* /a\nhttps://x.example/* /a",
            2,
            id="netlify-scheme-variants-are-not-duplicates",
        ),
        pytest.param("cloudflare", "\ufeff/a /b\r\n/c /d\r\n", 2, id="bom-and-crlf"),
    ],
)
def test_parse_accepts(dialect: Dialect, text: str, count: int) -> None:
    rules, warnings = RedirectRules.parse(text, dialect)
    assert warnings == []
    assert len(rules) == count


def test_static_rule_limit() -> None:
    lines = [f"/s{n} /t" for n in range(MAX_STATIC_RULES + 3)]
    rules, warnings = RedirectRules.parse("\n".join(lines), "cloudflare")
    assert len(rules) == MAX_STATIC_RULES
    assert warnings == [
        f"_redirects:{MAX_STATIC_RULES + 1}: skipped: more than 2,000 static rules "
        "(the Cloudflare Pages limit); this and 2 later static rules are ignored"
    ]


def test_dynamic_rule_limit_leaves_static_rules() -> None:
    lines = [f"/d{n}/* /t" for n in range(MAX_DYNAMIC_RULES + 1)] + ["/static /t"]
    rules, warnings = RedirectRules.parse("\n".join(lines), "netlify")
    assert len(rules) == MAX_DYNAMIC_RULES + 1
    assert warnings == [
        f"_redirects:{MAX_DYNAMIC_RULES + 1}: skipped: more than 100 dynamic rules "
        "(the Cloudflare Pages limit); this and 0 later dynamic rules are ignored"
    ]
    assert rules.match("h", "/static", b"") is not None


def test_query_condition_rule_counts_as_dynamic() -> None:
    lines = [f"/s{n} id=:id /t/:id" for n in range(MAX_DYNAMIC_RULES + 1)]
    rules, warnings = RedirectRules.parse("\n".join(lines), "netlify")
    assert len(rules) == MAX_DYNAMIC_RULES
    assert len(warnings) == 1


def test_empty_file() -> None:
    rules, warnings = RedirectRules.parse("", "netlify")
    assert (len(rules), warnings) == (0, [])
    assert rules.match("h", "/", b"") is None
