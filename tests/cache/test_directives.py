"""Cache directives as tables: `Cache-Control`, targeted fields and `Pragma`."""

from __future__ import annotations

import pytest

from edgeproxy.cache import directives
from edgeproxy.cache.directives import Directives
from edgeproxy.types import Headers


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


# -- Cache-Control parsing (§5.2, §1.2.2, §4.2.1) -------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([b"max-age=60"], Directives(max_age=60), id="max-age"),
        pytest.param([b'max-age="60"'], Directives(max_age=60), id="quoted-max-age"),
        pytest.param([b"max-age='60'"], Directives(max_age=0), id="single-quoted-is-stale"),
        pytest.param([b"MAX-AGE=60"], Directives(max_age=60), id="names-case-insensitive"),
        pytest.param([b"max-age=003600"], Directives(max_age=3600), id="leading-zeros"),
        pytest.param(
            [b"max-age=1, max-age=3600"], Directives(max_age=1), id="duplicate-max-age-takes-first"
        ),
        pytest.param(
            [b"max-age=3600", b"max-age=1"],
            Directives(max_age=3600),
            id="duplicate-max-age-across-lines-takes-first",
        ),
        pytest.param(
            [b"max-age=abc, max-age=60"], Directives(max_age=0), id="invalid-first-max-age-is-stale"
        ),
        pytest.param([b"max-age=3600.0"], Directives(max_age=0), id="decimal-max-age-is-stale"),
        pytest.param([b"max-age=-1"], Directives(max_age=0), id="negative-max-age-is-stale"),
        pytest.param([b"max-age =3600"], Directives(max_age=0), id="space-before-equals-is-stale"),
        pytest.param([b"max-age= 3600"], Directives(max_age=0), id="space-after-equals-is-stale"),
        pytest.param([b"max-age"], Directives(max_age=0), id="max-age-without-value-is-stale"),
        pytest.param(
            [b"max-age=99999999999"], Directives(max_age=2147483648), id="delta-overflow-caps-2-31"
        ),
        pytest.param(
            [b'ext="max-age=3600", max-age=1'], Directives(max_age=1), id="quoted-directive-ignored"
        ),
        pytest.param(
            [b'max-age=1, ext="a, max-age=3600"'], Directives(max_age=1), id="quoted-comma-ignored"
        ),
        pytest.param([b"s-maxage=5, max-age=9"], Directives(max_age=9, s_maxage=5), id="s-maxage"),
        pytest.param([b"no-cache"], Directives(no_cache=True), id="no-cache"),
        pytest.param(
            [b'no-cache="Set-Cookie, X-A"'],
            Directives(no_cache_fields=frozenset({"set-cookie", "x-a"})),
            id="no-cache-qualified",
        ),
        pytest.param(
            [b"no-cache=set-cookie"],
            Directives(no_cache_fields=frozenset({"set-cookie"})),
            id="no-cache-token-argument",
        ),
        pytest.param(
            [b'no-cache=""'], Directives(no_cache=True), id="no-cache-empty-list-is-unqualified"
        ),
        pytest.param([b"private"], Directives(private=True), id="private"),
        pytest.param(
            [b'private="x-user"'],
            Directives(private_fields=frozenset({"x-user"})),
            id="private-qualified",
        ),
        pytest.param(
            [b"no-store", b"public"], Directives(no_store=True, public=True), id="lines-combined"
        ),
        pytest.param(
            [b"must-revalidate, proxy-revalidate"],
            Directives(must_revalidate=True, proxy_revalidate=True),
            id="revalidate-flags",
        ),
        pytest.param(
            [b"must-understand, no-transform, immutable"],
            Directives(must_understand=True, no_transform=True, immutable=True),
            id="other-flags",
        ),
        pytest.param(
            [b"stale-while-revalidate=30, stale-if-error=60"],
            Directives(stale_while_revalidate=30, stale_if_error=60),
            id="rfc5861",
        ),
        pytest.param([b"stale-while-revalidate=x"], Directives(), id="invalid-swr-ignored"),
        pytest.param([b"max-stale"], Directives(max_stale_any=True), id="max-stale-any"),
        pytest.param(
            [b"max-stale=10, min-fresh=5"],
            Directives(max_stale=10, min_fresh=5),
            id="max-stale-min-fresh",
        ),
        pytest.param([b"min-fresh=soon"], Directives(), id="invalid-min-fresh-ignored"),
        pytest.param([b"only-if-cached"], Directives(only_if_cached=True), id="only-if-cached"),
        pytest.param(
            [b" , ,foo, &&&, max-age=5 ,"], Directives(max_age=5), id="junk-members-skipped"
        ),
        pytest.param([], Directives(), id="absent"),
    ],
)
def test_parse_cache_control(values: list[bytes], expected: Directives) -> None:
    assert directives.parse_cache_control(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            [b"max-age=60, must-revalidate"],
            Directives(max_age=60, must_revalidate=True),
            id="sf-dictionary",
        ),
        pytest.param([b"max-age=60;foo=bar"], Directives(max_age=60), id="sf-parameters-ignored"),
        pytest.param([b'max-age="60"'], Directives(), id="sf-string-max-age-dropped"),
        pytest.param([b"max-age=1.5"], Directives(), id="sf-decimal-max-age-dropped"),
        pytest.param(
            [b'private="x-a"'],
            Directives(private_fields=frozenset({"x-a"})),
            id="sf-private-fields",
        ),
        pytest.param([b"no-store=?0"], Directives(), id="sf-false-flag-absent"),
        pytest.param([b"none"], Directives(), id="sf-unknown-member-still-valid"),
        pytest.param([b"max-age=10000, &&&&&"], None, id="sf-invalid-ignored"),
        pytest.param([b"MaX-aGe=60"], None, id="sf-uppercase-key-invalid"),
        pytest.param([b""], None, id="sf-empty-ignored"),
        pytest.param([b"max-age=1234567890123456"], None, id="sf-integer-too-long-invalid"),
    ],
)
def test_parse_targeted(values: list[bytes], expected: Directives | None) -> None:
    assert directives.parse_targeted(values) == expected


def test_pragma_no_cache_only_without_cache_control() -> None:
    assert directives.request_directives(h(("Pragma", "no-cache"))).no_cache
    both = h(("Pragma", "no-cache"), ("Cache-Control", "max-stale"))
    assert not directives.request_directives(both).no_cache
