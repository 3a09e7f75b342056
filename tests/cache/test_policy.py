"""The RFC 9111 policy as tables: one named case per directive, corner and section."""

from __future__ import annotations

from typing import Any

import pytest

from edgeproxy.cache import dates, policy
from edgeproxy.cache.policy import Decision
from edgeproxy.types import Headers

T0 = 1_000_000_000.0  # Sun, 09 Sep 2001 01:46:40 GMT
DATE = dates.format_http_date(T0)


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


def date(offset: float) -> str:
    return dates.format_http_date(T0 + offset).decode()


# -- storability (§3, §3.5) ---------------------------------------------------------------

AUTH = h(("Authorization", "Bearer x"))


@pytest.mark.parametrize(
    ("method", "status", "req", "resp", "expected"),
    [
        pytest.param("GET", 200, [], h(("Cache-Control", "max-age=60")), True, id="max-age-stored"),
        pytest.param("GET", 200, [], [], True, id="heuristic-status-stored"),
        pytest.param("GET", 302, [], [], False, id="302-needs-explicit-freshness"),
        pytest.param("GET", 302, [], h(("Expires", date(60))), True, id="302-with-expires"),
        pytest.param("GET", 302, [], h(("Expires", "0")), True, id="invalid-expires-still-counts"),
        pytest.param(
            "GET", 302, [], h(("Cache-Control", "public")), True, id="public-makes-storable"
        ),
        pytest.param(
            "GET", 302, [], h(("Cache-Control", "s-maxage=5")), True, id="s-maxage-makes-storable"
        ),
        pytest.param(
            "GET", 302, [], h(("Cache-Control", "no-cache")), False, id="no-cache-alone-not-enough"
        ),
        pytest.param(
            "POST", 200, [], h(("Cache-Control", "max-age=60")), False, id="post-not-stored"
        ),
        pytest.param(
            "HEAD", 200, [], h(("Cache-Control", "max-age=60")), False, id="head-not-stored"
        ),
        pytest.param(
            "GET", 103, [], h(("Cache-Control", "max-age=60")), False, id="interim-not-stored"
        ),
        pytest.param(
            "GET", 206, [], h(("Cache-Control", "max-age=60")), False, id="partial-not-stored"
        ),
        pytest.param(
            "GET", 304, [], h(("Cache-Control", "max-age=60")), False, id="304-not-stored"
        ),
        pytest.param(
            "GET", 299, [], h(("Cache-Control", "max-age=60")), True, id="unknown-status-explicit"
        ),
        pytest.param("GET", 299, [], [], False, id="unknown-status-no-freshness"),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "no-store, max-age=60")),
            False,
            id="no-store-response",
        ),
        pytest.param(
            "GET",
            200,
            h(("Cache-Control", "no-store")),
            h(("Cache-Control", "max-age=60")),
            False,
            id="no-store-request",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "max-age=60, private")),
            False,
            id="private-not-stored-shared",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", 'max-age=60, private="x"')),
            False,
            id="qualified-private-not-stored-shared",
        ),
        pytest.param(
            "GET",
            200,
            AUTH,
            h(("Cache-Control", "max-age=60")),
            False,
            id="authorization-needs-public",
        ),
        pytest.param(
            "GET",
            200,
            AUTH,
            h(("Cache-Control", "max-age=60, public")),
            True,
            id="authorization-with-public",
        ),
        pytest.param(
            "GET",
            200,
            AUTH,
            h(("Cache-Control", "must-revalidate")),
            True,
            id="authorization-with-must-revalidate",
        ),
        pytest.param(
            "GET",
            200,
            AUTH,
            h(("Cache-Control", "s-maxage=5")),
            True,
            id="authorization-with-s-maxage",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "must-understand, no-store, max-age=9")),
            True,
            id="must-understand-overrides-no-store",
        ),
        pytest.param(
            "GET",
            299,
            [],
            h(("Cache-Control", "must-understand, max-age=9")),
            False,
            id="must-understand-unknown-status",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "max-age=60"), ("Vary", "*")),
            True,
            id="vary-star-storable",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")),
            True,
            id="cdn-cache-control-overrides-no-store",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")),
            False,
            id="cdn-no-store",
        ),
        pytest.param(
            "GET",
            200,
            [],
            h(("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "private")),
            False,
            id="cdn-private",
        ),
        pytest.param(
            "GET",
            302,
            [],
            h(("CDN-Cache-Control", "none"), ("Expires", date(60))),
            False,
            id="cdn-field-hides-expires",
        ),
    ],
)
def test_response_storable(
    method: str, status: int, req: Headers, resp: Headers, expected: bool
) -> None:
    assert policy.response_storable(method, status, req, resp) is expected


def test_private_and_authorization_allowed_in_private_cache() -> None:
    resp = h(("Cache-Control", "max-age=60, private"))
    assert policy.response_storable("GET", 200, AUTH, resp, shared=False)


def test_cdn_header_can_be_disabled() -> None:
    resp = h(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60"))
    assert not policy.response_storable("GET", 200, [], resp, cdn_header=None)


# -- freshness lifetime (§4.2.1, §4.2.2) ----------------------------------------------------

LM_1000 = ("Last-Modified", date(-1000))


@pytest.mark.parametrize(
    ("resp", "kwargs", "expected"),
    [
        pytest.param(h(("Cache-Control", "max-age=60")), {}, 60, id="max-age"),
        pytest.param(
            h(("Cache-Control", "max-age=60, s-maxage=5")), {}, 5, id="s-maxage-beats-max-age"
        ),
        pytest.param(
            h(("Cache-Control", "max-age=60, s-maxage=5")),
            {"shared": False},
            60,
            id="s-maxage-ignored-private-cache",
        ),
        pytest.param(
            h(("Cache-Control", "max-age=60"), ("Expires", date(999)), ("Date", DATE.decode())),
            {},
            60,
            id="max-age-beats-expires",
        ),
        pytest.param(
            h(("Expires", date(100)), ("Date", date(10))), {}, 90, id="expires-minus-date"
        ),
        pytest.param(
            h(("Expires", date(100))), {}, 100, id="expires-without-date-uses-response-time"
        ),
        pytest.param(h(("Expires", date(-5)), ("Date", DATE.decode())), {}, 0, id="expires-past"),
        pytest.param(
            h(("Expires", "0"), ("Date", DATE.decode())), {}, 0, id="expires-invalid-is-stale"
        ),
        pytest.param(h(("Expires", "0"), LM_1000), {}, 0, id="expires-invalid-blocks-heuristic"),
        pytest.param(
            h(("Expires", date(100)), ("Expires", date(500))),
            {},
            100,
            id="duplicate-expires-takes-first",
        ),
        pytest.param(h(LM_1000, ("Date", DATE.decode())), {}, 100, id="heuristic-10-percent"),
        pytest.param(h(LM_1000), {}, 100, id="heuristic-date-missing-uses-response-time"),
        pytest.param(h(("Last-Modified", date(5))), {}, 0, id="heuristic-future-last-modified"),
        pytest.param(h(LM_1000), {"status": 302}, 0, id="heuristic-not-for-302"),
        pytest.param(
            h(LM_1000, ("Cache-Control", "public")), {"status": 302}, 100, id="heuristic-public-302"
        ),
        pytest.param(h(LM_1000), {"status": 404}, 100, id="heuristic-404"),
        pytest.param([], {"default_ttl": 30}, 30, id="default-ttl"),
        pytest.param(h(LM_1000), {"default_ttl": 30}, 100, id="heuristic-beats-default-ttl"),
        pytest.param(
            h(("Cache-Control", "max-age=0")),
            {"default_ttl": 30},
            0,
            id="explicit-zero-beats-default-ttl",
        ),
        pytest.param([], {"default_ttl": 30, "status": 302}, 0, id="default-ttl-not-for-302"),
        pytest.param(h(("Cache-Control", "max-age=600")), {"max_ttl": 60}, 60, id="max-ttl-clamps"),
        pytest.param(
            h(("Cache-Control", "max-age=1"), ("CDN-Cache-Control", "max-age=3600")),
            {},
            3600,
            id="cdn-cache-control-wins",
        ),
        pytest.param(
            h(("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "max-age=1")),
            {},
            1,
            id="cdn-short-beats-long-cc",
        ),
        pytest.param(
            h(("CDN-Cache-Control", "max-age=3600"), ("Expires", "0")),
            {},
            3600,
            id="cdn-ignores-invalid-expires",
        ),
        pytest.param(
            h(("CDN-Cache-Control", "max-age=0"), ("Expires", date(100))),
            {},
            0,
            id="cdn-zero-beats-expires",
        ),
        pytest.param(
            h(("Cache-Control", "max-age=7"), ("CDN-Cache-Control", "max-age=10000, &&&")),
            {},
            7,
            id="cdn-invalid-falls-back",
        ),
        pytest.param(
            h(("Cache-Control", "max-age=7"), ("CDN-Cache-Control", "max-age=60")),
            {"cdn_header": None},
            7,
            id="cdn-disabled",
        ),
        pytest.param(
            h(("Cache-Control", "max-age=7"), ("Surrogate-Control", "max-age=60")),
            {"cdn_header": b"surrogate-control"},
            60,
            id="cdn-header-configurable",
        ),
    ],
)
def test_freshness_lifetime(resp: Headers, kwargs: dict[str, Any], expected: float) -> None:
    assert policy.freshness_lifetime(resp, T0, **kwargs) == pytest.approx(expected)


# -- age (§4.2.3) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "request_time", "response_time", "now", "expected"),
    [
        pytest.param(h(("Date", DATE.decode())), T0, T0, T0 + 10, 10, id="resident-time"),
        pytest.param(
            h(("Date", DATE.decode()), ("Age", "100")), T0, T0, T0, 100, id="age-header-corrects"
        ),
        pytest.param(
            h(("Date", DATE.decode()), ("Age", "100")),
            T0 - 2,
            T0,
            T0,
            102,
            id="age-plus-response-delay",
        ),
        pytest.param(h(("Date", date(-50))), T0, T0, T0, 50, id="apparent-age-from-date"),
        pytest.param(h(("Date", date(50))), T0, T0, T0, 0, id="future-date-apparent-age-zero"),
        pytest.param(
            h(("Date", date(-50)), ("Age", "20")), T0, T0, T0, 50, id="larger-of-apparent-and-age"
        ),
        pytest.param([], T0 - 1, T0, T0 + 5, 6, id="date-missing"),
        pytest.param(h(("Date", "garbage")), T0, T0, T0, 0, id="date-invalid-is-missing"),
        pytest.param(h(("Age", "abc")), T0, T0, T0, 0, id="age-invalid-ignored"),
        pytest.param(h(("Age", "-7200")), T0, T0, T0, 0, id="age-negative-ignored"),
        pytest.param(h(("Age", "7200.0")), T0, T0, T0, 0, id="age-float-ignored"),
        pytest.param(h(("Age", "7200, 0")), T0, T0, T0, 7200, id="age-list-first-member"),
        pytest.param(h(("Age", "7200"), ("Age", "0")), T0, T0, T0, 7200, id="age-first-line"),
        pytest.param(h(("Age", "99999999999")), T0, T0, T0, 2147483648, id="age-overflow-caps"),
    ],
)
def test_current_age(
    resp: Headers, request_time: float, response_time: float, now: float, expected: float
) -> None:
    assert policy.current_age(resp, request_time, response_time, now) == pytest.approx(expected)


# -- keys (§2, §4.1) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        pytest.param(
            ("GET", "https", "Example.COM", b"/a?b=1&a=2"),
            {},
            "GET https://example.com/a?b=1&a=2",
            id="keep",
        ),
        pytest.param(
            ("HEAD", "https", "example.com", b"/a"),
            {},
            "GET https://example.com/a",
            id="head-shares-get-key",
        ),
        pytest.param(
            ("GET", "https", "example.com:443", b"/a"),
            {},
            "GET https://example.com/a",
            id="default-port-dropped",
        ),
        pytest.param(
            ("GET", "http", "example.com:8080", b"/a"),
            {},
            "GET http://example.com:8080/a",
            id="other-port-kept",
        ),
        pytest.param(
            ("GET", "https", "example.com", b""),
            {},
            "GET https://example.com/",
            id="empty-path-is-slash",
        ),
        pytest.param(
            ("GET", "https", "example.com", b"/%7euser/%2f?"),
            {},
            "GET https://example.com/~user/%2F",
            id="percent-normalised",
        ),
        pytest.param(
            ("GET", "https", "e.com", b"/?b=1&a=2&b=0"),
            {"query": "sort"},
            "GET https://e.com/?a=2&b=1&b=0",
            id="sort-stable",
        ),
        pytest.param(
            ("GET", "https", "e.com", b"/?b=1"),
            {"query": "ignore"},
            "GET https://e.com/",
            id="ignore",
        ),
        pytest.param(
            ("GET", "https", "e.com", b"/?utm=1&id=2&x%5B%5D=3"),
            {"allow": frozenset({"id", "x[]"})},
            "GET https://e.com/?id=2&x%5B%5D=3",
            id="allow-list",
        ),
        pytest.param(
            ("GET", "https", "e.com", b"/?z=1&utm=1&a=2"),
            {"query": "sort", "allow": frozenset({"z", "a"})},
            "GET https://e.com/?a=2&z=1",
            id="allow-list-sorted",
        ),
    ],
)
def test_cache_key(
    args: tuple[str, str, str, bytes], kwargs: dict[str, Any], expected: str
) -> None:
    assert policy.cache_key(*args, **kwargs) == expected


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        pytest.param([], (), id="no-vary"),
        pytest.param(
            h(("Vary", "Accept-Encoding, accept-encoding"), ("Vary", "X-A")),
            ("accept-encoding", "x-a"),
            id="combined-deduped",
        ),
        pytest.param(h(("Vary", "Accept, *")), None, id="vary-star"),
    ],
)
def test_vary_names(resp: Headers, expected: tuple[str, ...] | None) -> None:
    assert policy.vary_names(resp) == expected


@pytest.mark.parametrize(
    ("first", "second", "match"),
    [
        pytest.param(
            h(("Accept-Encoding", "gzip,  br")),
            h(("Accept-Encoding", " gzip,br ")),
            True,
            id="vary-normalises-whitespace",
        ),
        pytest.param(
            h(("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")),
            h(("Accept-Encoding", "gzip, br")),
            True,
            id="vary-combines-lines",
        ),
        pytest.param(
            h(("Accept-Encoding", "GZIP")),
            h(("Accept-Encoding", "gzip")),
            True,
            id="vary-caseless-field",
        ),
        pytest.param(h(("X-A", "Foo")), h(("X-A", "foo")), False, id="vary-case-sensitive-field"),
        pytest.param(
            h(("Accept-Encoding", "br, gzip")),
            h(("Accept-Encoding", "gzip, br")),
            False,
            id="vary-order-kept",
        ),
        pytest.param([], h(("Accept-Encoding", "")), False, id="vary-absent-differs-from-empty"),
        pytest.param([], [], True, id="vary-both-absent"),
    ],
)
def test_vary_key(first: Headers, second: Headers, match: bool) -> None:
    names = ("accept-encoding", "x-a")
    assert (policy.vary_key(names, first) == policy.vary_key(names, second)) is match


# -- reuse (§4, §4.2.4, §5.2.1, RFC 5861) -------------------------------------------------


def fresh_for(seconds: int, extra: str = "") -> Headers:
    value = f"max-age={seconds}" + (f", {extra}" if extra else "")
    return h(("Date", DATE.decode()), ("Cache-Control", value))


@pytest.mark.parametrize(
    ("stored", "req", "elapsed", "decision"),
    [
        pytest.param(fresh_for(60), [], 10, Decision.FRESH, id="fresh"),
        pytest.param(fresh_for(60), [], 60, Decision.STALE_REVALIDATE, id="stale-at-lifetime"),
        pytest.param(fresh_for(60), [], 70, Decision.STALE_REVALIDATE, id="stale"),
        pytest.param(
            fresh_for(60, "no-cache"), [], 1, Decision.MUST_VALIDATE, id="no-cache-response"
        ),
        pytest.param(
            fresh_for(60, 'no-cache="set-cookie"'),
            [],
            1,
            Decision.MUST_VALIDATE,
            id="qualified-no-cache-validates",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "no-cache")),
            1,
            Decision.MUST_VALIDATE,
            id="no-cache-request",
        ),
        pytest.param(
            fresh_for(60),
            h(("Pragma", "no-cache")),
            1,
            Decision.MUST_VALIDATE,
            id="pragma-no-cache",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "max-age=5")),
            10,
            Decision.MUST_VALIDATE,
            id="request-max-age",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "max-age=15")),
            10,
            Decision.FRESH,
            id="request-max-age-satisfied",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "min-fresh=55")),
            10,
            Decision.MUST_VALIDATE,
            id="min-fresh",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "min-fresh=40")),
            10,
            Decision.FRESH,
            id="min-fresh-satisfied",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "max-stale=20")),
            70,
            Decision.STALE_OK,
            id="max-stale-serves-stale",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "max-stale=5")),
            70,
            Decision.STALE_REVALIDATE,
            id="max-stale-exceeded",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "max-stale")),
            9999,
            Decision.STALE_OK,
            id="max-stale-any",
        ),
        pytest.param(
            fresh_for(60, "must-revalidate"),
            h(("Cache-Control", "max-stale")),
            70,
            Decision.STALE_REVALIDATE,
            id="must-revalidate-beats-max-stale",
        ),
        pytest.param(
            fresh_for(60, "proxy-revalidate"),
            h(("Cache-Control", "max-stale")),
            70,
            Decision.STALE_REVALIDATE,
            id="proxy-revalidate-shared",
        ),
        pytest.param(
            fresh_for(60, "s-maxage=60"),
            h(("Cache-Control", "max-stale")),
            70,
            Decision.STALE_REVALIDATE,
            id="s-maxage-implies-proxy-revalidate",
        ),
        pytest.param(
            fresh_for(60, "stale-while-revalidate=30"),
            [],
            80,
            Decision.STALE_OK_WHILE_REVALIDATE,
            id="stale-while-revalidate",
        ),
        pytest.param(
            fresh_for(60, "stale-while-revalidate=30"),
            [],
            100,
            Decision.STALE_REVALIDATE,
            id="stale-while-revalidate-expired",
        ),
        pytest.param(
            fresh_for(60, "stale-while-revalidate=30, must-revalidate"),
            [],
            80,
            Decision.STALE_REVALIDATE,
            id="must-revalidate-beats-swr",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "only-if-cached")),
            10,
            Decision.FRESH,
            id="only-if-cached-fresh",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "only-if-cached")),
            70,
            Decision.GATEWAY_TIMEOUT,
            id="only-if-cached",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "only-if-cached, max-stale")),
            70,
            Decision.STALE_OK,
            id="only-if-cached-max-stale",
        ),
        pytest.param(
            fresh_for(60) + h(("Vary", "*")), [], 1, Decision.MISS, id="vary-star-never-matches"
        ),
        pytest.param(
            fresh_for(60) + h(("Age", "100")),
            [],
            1,
            Decision.STALE_REVALIDATE,
            id="age-makes-stale",
        ),
        pytest.param(
            h(
                ("Date", DATE.decode()),
                ("CDN-Cache-Control", "no-cache"),
                ("Cache-Control", "max-age=600"),
            ),
            [],
            1,
            Decision.MUST_VALIDATE,
            id="cdn-no-cache",
        ),
    ],
)
def test_evaluate(stored: Headers, req: Headers, elapsed: float, decision: Decision) -> None:
    assert policy.evaluate(stored, T0, T0, req, T0 + elapsed).decision is decision


def test_evaluate_reports_age_ttl_and_fwd() -> None:
    evaluation = policy.evaluate(fresh_for(60), T0, T0, [], T0 + 70)
    assert (evaluation.age, evaluation.ttl, evaluation.fwd) == (70, -10, "stale")
    forced = policy.evaluate(fresh_for(60), T0, T0, h(("Cache-Control", "no-cache")), T0 + 1)
    assert forced.fwd == "request"


@pytest.mark.parametrize(
    ("stored", "kwargs", "elapsed", "decision"),
    [
        pytest.param(
            fresh_for(60),
            {"stale_while_revalidate": 30},
            80,
            Decision.STALE_OK_WHILE_REVALIDATE,
            id="route-swr-default",
        ),
        pytest.param(
            fresh_for(60, "stale-while-revalidate=5"),
            {"stale_while_revalidate": 30},
            80,
            Decision.STALE_REVALIDATE,
            id="response-swr-beats-route",
        ),
        pytest.param(
            h(("Date", DATE.decode())),
            {"default_ttl": 30},
            20,
            Decision.FRESH,
            id="route-default-ttl",
        ),
        pytest.param(
            fresh_for(600), {"max_ttl": 30}, 40, Decision.STALE_REVALIDATE, id="route-max-ttl"
        ),
    ],
)
def test_evaluate_route_settings(
    stored: Headers, kwargs: dict[str, Any], elapsed: float, decision: Decision
) -> None:
    assert policy.evaluate(stored, T0, T0, [], T0 + elapsed, **kwargs).decision is decision


@pytest.mark.parametrize(
    ("stored", "req", "kwargs", "elapsed", "expected"),
    [
        pytest.param(
            fresh_for(60, "stale-if-error=60"), [], {}, 100, True, id="stale-if-error-response"
        ),
        pytest.param(
            fresh_for(60, "stale-if-error=10"), [], {}, 100, False, id="stale-if-error-expired"
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "stale-if-error=60")),
            {},
            100,
            True,
            id="stale-if-error-request",
        ),
        pytest.param(
            fresh_for(60), [], {"stale_if_error": 60}, 100, True, id="stale-if-error-route-default"
        ),
        pytest.param(fresh_for(60), [], {}, 100, False, id="no-stale-if-error"),
        pytest.param(
            fresh_for(60, "stale-if-error=60, must-revalidate"),
            [],
            {},
            100,
            False,
            id="must-revalidate-forbids-stale-on-error",
        ),
        pytest.param(
            fresh_for(60, "stale-if-error=60, no-cache"),
            [],
            {},
            100,
            False,
            id="no-cache-forbids-stale-on-error",
        ),
        pytest.param(
            fresh_for(60),
            h(("Cache-Control", "no-cache")),
            {},
            10,
            True,
            id="fresh-served-on-error",
        ),
    ],
)
def test_serve_on_error(
    stored: Headers, req: Headers, kwargs: dict[str, Any], elapsed: float, expected: bool
) -> None:
    assert policy.evaluate(stored, T0, T0, req, T0 + elapsed, **kwargs).serve_on_error is expected


# -- validation and 304 updates (§4.3, §3.2) ----------------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param(
            h(("ETag", '"a"'), ("Last-Modified", DATE.decode())),
            h(("If-None-Match", '"a"'), ("If-Modified-Since", DATE.decode())),
            id="both-validators",
        ),
        pytest.param(h(("ETag", 'W/"a"')), h(("If-None-Match", 'W/"a"')), id="weak-etag"),
        pytest.param(h(("Last-Modified", "yesterday")), [], id="invalid-last-modified-skipped"),
        pytest.param([], [], id="no-validators"),
    ],
)
def test_conditional_headers(stored: Headers, expected: Headers) -> None:
    assert policy.conditional_headers(stored) == expected


@pytest.mark.parametrize(
    ("stored", "not_modified", "expected"),
    [
        pytest.param(
            h(("Content-Length", "5"), ("Cache-Control", "max-age=1"), ("X-A", "old")),
            h(("Content-Length", "0"), ("Cache-Control", "max-age=3600"), ("X-A", "new")),
            h(("Content-Length", "5"), ("Cache-Control", "max-age=3600"), ("X-A", "new")),
            id="304-updates-headers-not-content-length",
        ),
        pytest.param(
            h(("X-A", "1")),
            h(("X-B", "2")),
            h(("X-A", "1"), ("X-B", "2")),
            id="304-adds-new-fields",
        ),
        pytest.param(h(("X-A", "kept")), [], h(("X-A", "kept")), id="304-omitted-field-kept"),
        pytest.param(
            h(("Set-Cookie", "a=1"), ("Set-Cookie", "b=1"), ("X", "y")),
            h(("Set-Cookie", "c=1")),
            h(("Set-Cookie", "c=1"), ("X", "y")),
            id="304-replaces-all-lines",
        ),
        pytest.param(
            h(("Content-Type", "text/plain")),
            h(
                ("Content-Type", "text/html"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "x-hop"),
                ("X-Hop", "1"),
                ("Proxy-Authenticate", "Basic"),
            ),
            h(("Content-Type", "text/html")),
            id="304-hop-by-hop-and-proxy-fields-skipped",
        ),
    ],
)
def test_updated_headers(stored: Headers, not_modified: Headers, expected: Headers) -> None:
    assert policy.updated_headers(stored, not_modified) == expected


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(h(("If-None-Match", '"x", "a"')), True, id="inm-matches"),
        pytest.param(h(("If-None-Match", 'W/"a"')), True, id="inm-weak-comparison"),
        pytest.param(h(("If-None-Match", '"b"')), False, id="inm-differs"),
        pytest.param(h(("If-None-Match", "*")), True, id="inm-star"),
        pytest.param(
            h(("If-None-Match", '"b"'), ("If-Modified-Since", date(10))),
            False,
            id="inm-wins-over-ims",
        ),
        pytest.param(h(("If-Modified-Since", date(10))), True, id="ims-not-modified"),
        pytest.param(h(("If-Modified-Since", date(-10))), False, id="ims-modified"),
        pytest.param(h(("If-Modified-Since", "nope")), False, id="ims-invalid-ignored"),
        pytest.param([], False, id="unconditional"),
    ],
)
def test_client_not_modified(req: Headers, expected: bool) -> None:
    stored = h(("ETag", '"a"'), ("Last-Modified", DATE.decode()))
    assert policy.client_not_modified(req, stored) is expected


# -- invalidation (§4.4) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        pytest.param("POST", 200, True, id="unsafe-method-invalidates"),
        pytest.param("DELETE", 204, True, id="delete-invalidates"),
        pytest.param("PUT", 303, True, id="redirect-invalidates"),
        pytest.param("PURGEX", 200, True, id="unknown-method-is-unsafe"),
        pytest.param("POST", 404, False, id="error-does-not-invalidate"),
        pytest.param("POST", 500, False, id="server-error-does-not-invalidate"),
        pytest.param("GET", 200, False, id="safe-method-does-not"),
        pytest.param("OPTIONS", 200, False, id="options-is-safe"),
    ],
)
def test_invalidates(method: str, status: int, expected: bool) -> None:
    assert policy.invalidates(method, status) is expected


# -- Cache-Status (RFC 9211) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        pytest.param((True,), {"ttl": 42.9}, b"edgeproxy; hit; ttl=42", id="hit-ttl"),
        pytest.param(
            (False,),
            {"fwd": "uri-miss", "stored": True},
            b"edgeproxy; fwd=uri-miss; stored",
            id="miss-stored",
        ),
        pytest.param(
            (True,),
            {"fwd": "stale", "ttl": -0.5},
            b"edgeproxy; hit; fwd=stale; ttl=-1",
            id="stale-negative-ttl",
        ),
        pytest.param(
            (False,),
            {"fwd": "stale", "fwd_status": 304},
            b"edgeproxy; fwd=stale; fwd-status=304",
            id="fwd-status",
        ),
        pytest.param(
            (False,),
            {"fwd": "miss", "collapsed": True},
            b"edgeproxy; fwd=miss; collapsed",
            id="collapsed",
        ),
        pytest.param(
            (False,),
            {"detail": "origin down", "name": "edge 1"},
            b'"edge 1"; detail="origin down"',
            id="strings-quoted",
        ),
        pytest.param((False,), {"stored": False}, b"edgeproxy", id="not-stored-omitted"),
    ],
)
def test_cache_status(args: tuple[bool], kwargs: dict[str, Any], expected: bytes) -> None:
    assert policy.cache_status(*args, **kwargs) == expected


def test_cache_status_rejects_unknown_fwd() -> None:
    with pytest.raises(ValueError, match="not an RFC 9211 reason"):
        policy.cache_status(False, fwd="nope")


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        pytest.param(3599.99, b"edgeproxy; hit; ttl=3599", id="floored"),
        pytest.param(0.2, b"edgeproxy; hit; ttl=0", id="under-a-second"),
        pytest.param(-0.5, b"edgeproxy; hit; ttl=-1", id="just-stale-is-negative"),
    ],
)
def test_hit_status_is_the_general_member_of_a_hit(ttl: float, expected: bytes) -> None:
    assert policy.hit_status(ttl) == expected == policy.cache_status(True, ttl=ttl)
