import re

import pytest

from edgeproxy.exceptions import BadRequest
from edgeproxy.routing.paths import RequestPath, check_prefix_boundary, parse_path


@pytest.mark.parametrize(
    ("raw", "raw_segments", "segments", "has_dots"),
    [
        pytest.param(b"/", (b"",), ("",), False, id="root"),
        pytest.param(b"/a/b", (b"a", b"b"), ("a", "b"), False, id="plain"),
        pytest.param(b"/a/b/", (b"a", b"b", b""), ("a", "b", ""), False, id="trailing-slash-kept"),
        pytest.param(b"/a//b", (b"a", b"", b"b"), ("a", "", "b"), False, id="empty-segment-kept"),
        pytest.param(
            b"/%41%62%7e%2D%5f",
            (b"%41%62%7e%2D%5f",),
            ("Ab~-_",),
            False,
            id="unreserved-escapes-decoded",
        ),
        pytest.param(
            b"/a%3fb%20c%23%25",
            (b"a%3fb%20c%23%25",),
            ("a%3Fb%20c%23%25",),
            False,
            id="reserved-escapes-kept-uppercased",
        ),
        pytest.param(
            b"/caf%c3%a9", (b"caf%c3%a9",), ("caf%C3%A9",), False, id="utf8-escapes-kept-uppercased"
        ),
        pytest.param(b"/%2541", (b"%2541",), ("%2541",), False, id="no-double-decoding"),
        pytest.param(
            b"/.well-known/x",
            (b".well-known", b"x"),
            (".well-known", "x"),
            False,
            id="dot-prefixed-name-is-not-a-dot-segment",
        ),
        pytest.param(b"/a/./b", (b"a", b".", b"b"), ("a", "b"), True, id="single-dot-removed"),
        pytest.param(
            b"/a/b/../c", (b"a", b"b", b"..", b"c"), ("a", "c"), True, id="double-dot-pops"
        ),
        pytest.param(
            b"/a/b/..",
            (b"a", b"b", b".."),
            ("a", ""),
            True,
            id="final-double-dot-leaves-trailing-slash",
        ),
        pytest.param(
            b"/a/.", (b"a", b"."), ("a", ""), True, id="final-single-dot-leaves-trailing-slash"
        ),
        pytest.param(b"/a/..", (b"a", b".."), ("",), True, id="back-to-root"),
        pytest.param(b"/.", (b".",), ("",), True, id="root-dot"),
        pytest.param(
            b"/a/%2e%2E/b", (b"a", b"%2e%2E", b"b"), ("b",), True, id="encoded-dot-segment-resolved"
        ),
        pytest.param(
            b"/a/.%2e/b",
            (b"a", b".%2e", b"b"),
            ("b",),
            True,
            id="half-encoded-dot-segment-resolved",
        ),
        pytest.param(
            b"/a//../b",
            (b"a", b"", b"..", b"b"),
            ("a", "b"),
            True,
            id="double-dot-pops-empty-segment",
        ),
    ],
)
def test_parse_path(
    raw: bytes, raw_segments: tuple[bytes, ...], segments: tuple[str, ...], has_dots: bool
) -> None:
    assert parse_path(raw) == RequestPath(raw, raw_segments, segments, has_dots)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        pytest.param(b"/", "/", id="root"),
        pytest.param(b"/a/b/", "/a/b/", id="trailing-slash"),
        pytest.param(b"/a/%7Eb/../c%3f", "/a/c%3F", id="decoded-and-resolved"),
    ],
)
def test_normalized(raw: bytes, normalized: str) -> None:
    assert parse_path(raw).normalized == normalized


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"http://x/", "not a path starting with '/'", id="absolute-form-refused"),
        pytest.param(b"*", "not a path starting with '/'", id="asterisk-form-refused"),
        pytest.param(b"", "not a path starting with '/'", id="empty-refused"),
        pytest.param(b"/a%2Fb", "encoded slash (%2F) at offset 2", id="encoded-slash-refused"),
        pytest.param(b"/a%2fb", "encoded slash (%2F)", id="encoded-slash-lowercase-refused"),
        pytest.param(b"/a%5Cb", "encoded backslash (%5C)", id="encoded-backslash-refused"),
        pytest.param(b"/a%5cb", "encoded backslash (%5C)", id="encoded-backslash-lower-refused"),
        pytest.param(b"/a\\b", "backslash at offset 2", id="backslash-refused"),
        pytest.param(b"/a\x00b", "NUL byte at offset 2", id="nul-refused"),
        pytest.param(b"/a%00b", "encoded NUL (%00)", id="encoded-nul-refused"),
        pytest.param(b"/a\rb", "control or space byte 0x0d", id="cr-refused"),
        pytest.param(b"/a\nb", "control or space byte 0x0a", id="lf-refused"),
        pytest.param(b"/a\tb", "control or space byte 0x09", id="tab-refused"),
        pytest.param(b"/a\x7fb", "control or space byte 0x7f", id="del-refused"),
        pytest.param(b"/a b", "control or space byte 0x20", id="raw-space-refused"),
        pytest.param(
            b"/caf\xc3\xa9",
            "raw non-ASCII byte 0xc3 (percent-encode it) at offset 4",
            id="raw-non-ascii-refused",
        ),
        pytest.param(
            b"/a%zz", "malformed percent-escape '%zz' at offset 2", id="malformed-escape-refused"
        ),
        pytest.param(b"/a%4", "malformed percent-escape '%4'", id="truncated-escape-refused"),
        pytest.param(b"/a%", "malformed percent-escape '%'", id="bare-percent-refused"),
        pytest.param(b"/..", "climbs above the root", id="dot-dot-at-root-refused"),
        pytest.param(b"/../x", "climbs above the root", id="dot-dot-above-root-refused"),
        pytest.param(b"/a/../../x", "climbs above the root", id="dot-dot-climbs-past-root-refused"),
        pytest.param(b"/%2e%2e/x", "climbs above the root", id="encoded-dot-dot-climb-refused"),
    ],
)
def test_parse_path_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)) as caught:
        parse_path(raw)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("raw", "prefix_length"),
    [
        pytest.param(b"/api/x/../y", 1, id="dots-inside-remainder"),
        pytest.param(b"/api/x/..", 1, id="back-to-prefix"),
        pytest.param(b"/api/./x", 1, id="single-dot-in-remainder"),
        pytest.param(b"/api/.", 1, id="single-dot-after-prefix"),
        pytest.param(b"/%61pi/x/../y", 1, id="prefix-decodes-equal"),
        pytest.param(b"/x/../api", 0, id="root-prefix-takes-anything"),
    ],
)
def test_check_prefix_boundary_accepts(raw: bytes, prefix_length: int) -> None:
    check_prefix_boundary(parse_path(raw), prefix_length)


@pytest.mark.parametrize(
    ("raw", "prefix_length", "message"),
    [
        pytest.param(
            b"/api/../admin",
            1,
            "reaches the route prefix '/admin' only through",
            id="dot-segment-across-prefix-refused",
        ),
        pytest.param(
            b"/api/../api/x",
            1,
            "climbs out of the route prefix '/api'",
            id="climb-out-and-back-refused",
        ),
        pytest.param(
            b"/api/x/../../api/y",
            1,
            "climbs out of the route prefix '/api'",
            id="deep-climb-out-and-back-refused",
        ),
        pytest.param(
            b"/a/./b/c",
            2,
            "reaches the route prefix '/a/b' only through",
            id="single-dot-inside-prefix-refused",
        ),
        pytest.param(
            b"/api/%2e%2e/api",
            1,
            "climbs out of the route prefix '/api'",
            id="encoded-climb-refused",
        ),
    ],
)
def test_check_prefix_boundary_refuses(raw: bytes, prefix_length: int, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        check_prefix_boundary(parse_path(raw), prefix_length)
