"""Serve one immutable static deployment the way Cloudflare Pages does.

The tree is indexed once, in `StaticFiles.__init__`: every servable file gets its ETag, its
headers for each status it can be sent with, and (if small) its bytes. A request is then a
dict lookup plus the conditional and range logic.

Route matching follows Cloudflare's "Serving Pages" page (Route matching, Not Found behavior,
Single-page application rendering) and the asset server that page describes
(`packages/pages-shared/asset-server/handler.ts` in cloudflare/workers-sdk):

    request             deployment holds                 answer
    /                   index.html                       200 index.html
    /about              about.html                       200 about.html
    /about.html         about.html                       308 /about
    /about/             about.html, no about/index.html  308 /about
    /docs               docs/index.html, no docs.html    308 /docs/
    /docs/              docs/index.html                  200 docs/index.html
    /docs/index.html    docs/index.html                  308 /docs/
    /docs/index[/]      anything                         308 /docs/
    /app.js             app.js                           200 app.js

Ambiguous cases resolve as Pages does. A file under the exact requested name always wins. With
both `about.html` and `about/index.html`, `/about` serves about.html and `/about/` serves
about/index.html: a path ending in `/` looks for `<path>index.html` first, any other path for
`<path>.html` before redirecting to `<path>/`. `/x.html` is served rather than redirected when
a file named exactly `x` exists. Redirect locations keep the request's query string.

A path with no file gets the nearest `404.html` walking up from its directory to the root, with
status 404. When that walk finds none, `/index.html` is served with 200 (single-page-app mode;
so `/blog/404.html` alone covers `/blog/...` while `/other` still gets the app), and with no
`/index.html` either, an empty 404. Paths that could step outside the deployment (`..`, `.`,
empty segments, backslashes, NUL, not starting with `/`) are refused with a 404, never the app.

Not indexed, so never served: symlinks (even ones pointing inside the root), non-regular files,
names with a backslash, the root `_worker.js`, `_redirects`, `_headers`, `_routes.json` and
`functions/`, and `.DS_Store`, `node_modules` and `.git` anywhere (wrangler's upload ignore list).

Headers, as Pages sends them: `Access-Control-Allow-Origin: *` and `Referrer-Policy:
strict-origin-when-cross-origin` on every response, `X-Content-Type-Options: nosniff` with
every Content-Type; `Cache-Control` (`public, max-age=0, must-revalidate`, or a year and
`immutable` for `immutable_paths`; plus `no-transform` when precompressed) only when the
request has no Authorization or Range header, and never on a 404. Where we go further than
Pages: Range requests get 206 (Pages answers 200; several ranges still get the whole 200),
304s repeat the validators and Cache-Control (RFC 9110 §15.4.5; Pages sends a bare 304),
`If-None-Match` takes lists, `*` and weak tags, `If-Modified-Since` works against
`Last-Modified` (the file's mtime, which Pages does not send), and 405 carries `Allow`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import quote

import aiofiles

from edgeproxy.exceptions import ConfigError, ConfigIssue
from edgeproxy.responses import http_date, send_response
from edgeproxy.sites.conditional import (
    accepted_codings,
    etag_matches,
    if_range_holds,
    parse_range,
    unmodified_since,
)
from edgeproxy.types import Headers, Receive, Scope, Send

CHUNK_SIZE = 64 * 1024
MEMORY_FILE_LIMIT = 1024 * 1024

ExtraHeaders = Callable[[int, Headers], Headers]
ResolutionKind = Literal["file", "redirect", "not_found", "spa"]

_ROOT_ONLY_IGNORED = frozenset(
    {"_worker.js", "_redirects", "_headers", "_routes.json", "functions"}
)
_IGNORED_ANYWHERE = frozenset({".DS_Store", "node_modules", ".git"})
_SIBLINGS = (("br", ".br"), ("gzip", ".gz"))

_REVALIDATE = b"public, max-age=0, must-revalidate"
_IMMUTABLE = b"public, max-age=31536000, immutable"
_ALWAYS: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_EMPTY = (b"content-length", b"0")
_NOT_PARTIAL = frozenset({b"content-length", b"cache-control"})
_READ_METHODS = frozenset({"GET", "HEAD"})
# RFC 3986 pchar delimiters; everything else in a decoded path goes back to %XX in Location.
_PATH_SAFE = "/!$&'()*+,;=:@"


def _mime_table() -> mimetypes.MimeTypes:
    # Only Python's built-in table (not /etc/mime.types, which differs between hosts), with the
    # web types it lacks or gets wrong.
    table = mimetypes.MimeTypes()
    for extension, mime in {
        ".js": "text/javascript",  # RFC 9239
        ".mjs": "text/javascript",
        ".map": "application/json",
        ".md": "text/markdown",
        ".webp": "image/webp",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
        ".ttf": "font/ttf",
        ".otf": "font/otf",
    }.items():
        table.add_type(mime, extension)
    return table


_MIME = _mime_table()
# A file named `x.tar.gz` requested as itself is an archive, not gzip-encoded tar.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
}


@dataclass(frozen=True, slots=True, eq=False)
class Representation:
    """One stored encoding of a file, with its response headers built at index time."""

    fs_path: str
    encoding: str | None  # None: the identity (uncompressed) representation
    size: int
    mtime: int
    etag: str
    body: bytes | None  # None: streamed from disk
    ok: Headers
    not_modified: Headers
    as_page: Headers  # the file sent under another status: a 404 page, a rewrite's status


@dataclass(frozen=True, slots=True, eq=False)
class StaticFile:
    """A servable file: its deployment path (`/docs/index.html`) and representations."""

    path: str
    content_type: str
    identity: Representation
    encoded: dict[str, Representation]  # "br" / "gzip" siblings that exist


class FromDisk(NamedTuple):
    """A response whose body is `length` bytes of a file from `start`, read as it is sent."""

    status: int
    headers: Headers
    fs_path: str
    start: int
    length: int


# A whole response: status, headers and body.
Answer = tuple[int, Headers, bytes]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a GET of a path produces; `location` is a decoded path without the query."""

    kind: ResolutionKind
    status: int
    file: StaticFile | None = None
    location: str = ""


class StaticFiles:
    """The files of one deployment directory, indexed once and served from the index."""

    def __init__(
        self,
        root: Path,
        *,
        immutable_paths: Sequence[str] = ("/assets/*",),
        memory_limit: int = 32 * 1024 * 1024,
    ) -> None:
        self.root = root.resolve()
        self._immutable = _compile_patterns(immutable_paths)
        self._memory_left = max(0, memory_limit)
        stored = {path: self._store(path, info) for path, info in sorted(self._scan())}
        self._files = {path: self._index(path, stored) for path in stored}
        self._refused = Resolution("not_found", 404, self._files.get("/404.html"))
        self._table = self._route_table()

    def resolve(self, path: str) -> Resolution:
        """The answer to a GET of `path`, a normalized, percent-decoded absolute path."""
        resolution = self._table.get(path)
        if resolution is not None:
            return resolution
        if not _is_safe(path):
            return self._refused
        return self._route(path)

    def exists(self, path: str) -> bool:
        """Whether `path` is answered with a file (not a redirect, 404 or the SPA fallback)."""
        return self.resolve(path).kind == "file"

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        extra_headers: ExtraHeaders | None = None,
        *,
        status: int | None = None,
    ) -> int:
        """Answer the request for `path` and return the status sent.

        `extra_headers(status, headers)` returns the final header list of every response
        (for `_headers` rules and X-Robots-Tag); it may change the list it is given.
        `status` replaces the status a file would be sent with (a rewrite rule's own status,
        such as Netlify's `/old /gone.html 410`); redirects and empty 404s keep theirs.
        """
        answer = self.answer(scope, path, extra_headers, status=status)
        if isinstance(answer, FromDisk):
            return await _stream(send, answer)
        await send_response(send, *answer)
        return answer[0]

    def answer(
        self,
        scope: Scope,
        path: str,
        extra_headers: ExtraHeaders | None = None,
        *,
        status: int | None = None,
    ) -> Answer | FromDisk:
        """What `serve` sends: a whole response (status, headers, body), or a file part
        too large to hold in memory, to be read from disk as it is sent."""
        method = scope["method"]
        if method not in _READ_METHODS:
            headers = [(b"allow", b"GET, HEAD"), *_ALWAYS, _EMPTY]
            return _empty(405, headers, extra_headers)
        resolution = self._table.get(path)
        if resolution is None:
            resolution = self.resolve(path)
        file = resolution.file
        if resolution.kind == "redirect":
            location = quote(resolution.location, safe=_PATH_SAFE)
            if query := scope.get("query_string"):
                location = f"{location}?{query.decode('latin-1')}"
            headers = [(b"location", location.encode("latin-1")), *_ALWAYS, _EMPTY]
            return _empty(308, headers, extra_headers)
        if file is None:
            return _empty(404, [*_ALWAYS, _EMPTY], extra_headers)
        # dict() keeps the last of repeated lines; for the fields read here that can only
        # cost a 304 or 206 (the full 200 is sent instead), never a wrong answer.
        request = dict(scope["headers"])
        head = method == "HEAD"
        code = resolution.status if status is None else status
        if code != 200:
            # Validators and ranges describe a 200; a page sent under another status gets none.
            rep = _negotiate(file, request.get(b"accept-encoding"))
            headers = [*rep.as_page]
            return _body(code, headers, rep, 0, rep.size, head, extra_headers)
        return _file(file, request, head, extra_headers)

    def _scan(self) -> Iterator[tuple[str, os.stat_result]]:
        root = str(self.root)
        pending = [("", root)]
        while pending:
            rel_dir, abs_dir = pending.pop()
            with os.scandir(abs_dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name in _IGNORED_ANYWHERE or (not rel_dir and name in _ROOT_ONLY_IGNORED):
                        continue
                    # A link's target can change after indexing; a backslash is a separator
                    # on some clients and filesystems. Neither is worth the ambiguity.
                    if entry.is_symlink() or "\\" in name:
                        continue
                    rel = f"{rel_dir}/{name}"
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((rel, entry.path))
                        continue
                    info = entry.stat(follow_symlinks=False)
                    # realpath catches a directory swapped for a symlink while we walk.
                    real = os.path.realpath(entry.path)
                    if stat.S_ISREG(info.st_mode) and os.path.commonpath([root, real]) == root:
                        yield rel, info

    def _store(self, path: str, info: os.stat_result) -> _Stored:
        fs_path = os.path.join(self.root, path[1:])
        with open(fs_path, "rb", opener=_open_nofollow) as file:
            if info.st_size > MEMORY_FILE_LIMIT:
                digest = hashlib.file_digest(file, "sha256").hexdigest()
                body, size = None, info.st_size
            else:
                body = file.read()
                digest, size = hashlib.sha256(body).hexdigest(), len(body)
        if body is not None and size <= self._memory_left:
            self._memory_left -= size
        else:
            body = None
        # RFC 9110 §8.8.2.1: Last-Modified may not be later than the Date it is sent with.
        mtime = min(int(info.st_mtime), int(time.time()))
        return _Stored(fs_path, size, mtime, f'"{digest[:16]}"', body)

    def _index(self, path: str, stored: dict[str, _Stored]) -> StaticFile:
        content_type = _content_type(path)
        cache_control = _IMMUTABLE if self._immutable.fullmatch(path) else _REVALIDATE
        encoded = {
            encoding: _representation(
                stored[path + suffix], content_type, cache_control, encoding, vary=True
            )
            for encoding, suffix in _SIBLINGS
            if path + suffix in stored
        }
        identity = _representation(
            stored[path], content_type, cache_control, None, vary=bool(encoded)
        )
        return StaticFile(path, content_type, identity, encoded)

    def _route_table(self) -> dict[str, Resolution]:
        # Every path that reaches a file or a clean-URL redirect derives from some file's
        # path, so answering those ahead makes the hot path one dict lookup.
        table: dict[str, Resolution] = {}
        for path in self._files:
            candidates = [path]
            if path.endswith(".html"):
                stem = path[: -len(".html")]
                candidates += [stem, f"{stem}/"]
                if stem.endswith("/index"):
                    candidates += [stem[: -len("index")], stem[: -len("/index")]]
            for candidate in candidates:
                if candidate not in table and _is_safe(candidate):
                    resolution = self._route(candidate)
                    if resolution.kind in ("file", "redirect"):
                        table[candidate] = resolution
        return table

    def _route(self, path: str) -> Resolution:
        files = self._files
        if path.endswith("/"):
            if file := files.get(f"{path}index.html"):
                return Resolution("file", 200, file)
            if path.endswith("/index/"):
                return _redirect(path[: -len("index/")])
            if f"{path[:-1]}.html" in files:
                return _redirect(path[:-1])
            return self._not_found(path)
        if file := files.get(path):
            if not path.endswith(".html"):
                return Resolution("file", 200, file)
            stem = path[: -len(".html")]
            if stem.endswith("/index"):
                return _redirect(stem[: -len("index")])
            if stem in files or stem == "/":
                return Resolution("file", 200, file)
            return _redirect(stem)
        if path.endswith("/index"):
            return _redirect(path[: -len("index")])
        if file := files.get(f"{path}.html"):
            return Resolution("file", 200, file)
        if f"{path}/index.html" in files:
            return _redirect(f"{path}/")
        return self._not_found(path)

    def _not_found(self, path: str) -> Resolution:
        directory = path
        while directory:
            directory = directory[: directory.rfind("/")]
            if page := self._files.get(f"{directory}/404.html"):
                return Resolution("not_found", 404, page)
        if app := self._files.get("/index.html"):
            return Resolution("spa", 200, app)
        return Resolution("not_found", 404)


class _Stored(NamedTuple):
    fs_path: str
    size: int
    mtime: int
    etag: str
    body: bytes | None


def _representation(
    stored: _Stored, content_type: str, cache_control: bytes, encoding: str | None, *, vary: bool
) -> Representation:
    varies = [(b"vary", b"accept-encoding")] if vary else []
    typed = [(b"content-type", content_type.encode())]
    if encoding is not None:
        typed.append((b"content-encoding", encoding.encode()))
        cache_control += b", no-transform"
    typed.append((b"content-length", str(stored.size).encode()))
    validators = [
        (b"etag", stored.etag.encode()),
        (b"last-modified", formatdate(stored.mtime, usegmt=True).encode()),
        (b"cache-control", cache_control),
    ]
    ranges = [] if encoding else [(b"accept-ranges", b"bytes")]
    return Representation(
        fs_path=stored.fs_path,
        encoding=encoding,
        size=stored.size,
        mtime=stored.mtime,
        etag=stored.etag,
        body=stored.body,
        ok=[*typed, *validators, *ranges, *varies, *_ALWAYS, _NOSNIFF],
        not_modified=[*validators, *varies, *_ALWAYS],
        as_page=[*typed, *varies, *_ALWAYS, _NOSNIFF],
    )


def _redirect(location: str) -> Resolution:
    return Resolution("redirect", 308, location=location)


def _is_safe(path: str) -> bool:
    if not path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    segments = path.split("/")
    return segments[-1] not in (".", "..") and all(
        segment not in ("", ".", "..") for segment in segments[1:-1]
    )


def _compile_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    issues = [
        ConfigIssue(f"immutable_paths[{index}]", f"pattern {pattern!r} must start with '/'")
        for index, pattern in enumerate(patterns)
        if not pattern.startswith("/")
    ]
    if issues:
        raise ConfigError(issues)
    alternatives = [re.escape(pattern).replace(r"\*", ".*") for pattern in patterns]
    return re.compile("|".join(alternatives) or "(?!)", re.DOTALL)


def _content_type(path: str) -> str:
    mime, encoding = _MIME.guess_type(path, strict=False)
    if encoding is not None:
        mime = _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    mime = mime or "application/octet-stream"
    return f"{mime}; charset=utf-8" if mime.startswith("text/") else mime


def _open_nofollow(path: str, flags: int) -> int:
    # The tree is immutable, but a file swapped for a symlink must still not be followed.
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _file(
    file: StaticFile,
    request: dict[bytes, bytes],
    head: bool,
    extra: ExtraHeaders | None,
) -> Answer | FromDisk:
    range_header = request.get(b"range")
    # Ranges address the identity bytes, so a Range request never gets a compressed body.
    rep = file.identity
    if file.encoded and range_header is None:
        rep = _negotiate(file, request.get(b"accept-encoding"))
    cacheable = range_header is None and b"authorization" not in request
    if_none_match = request.get(b"if-none-match")
    since = request.get(b"if-modified-since")
    # RFC 9110 §13.2.2: If-Modified-Since only counts when there is no If-None-Match.
    if if_none_match is not None:
        fresh = etag_matches(if_none_match, rep.etag)
    else:
        fresh = since is not None and unmodified_since(since, rep.mtime)
    if fresh:
        headers = rep.not_modified if cacheable else _uncached(rep.not_modified)
        return _empty(304, [*headers], extra)
    if range_header is not None and if_range_holds(request.get(b"if-range"), rep.etag, rep.mtime):
        byte_range = parse_range(range_header, rep.size)
        if byte_range == "unsatisfiable":
            headers = [(b"content-range", f"bytes */{rep.size}".encode()), *_ALWAYS, _EMPTY]
            return _empty(416, headers, extra)
        if byte_range is not None:
            start, end = byte_range
            headers = [header for header in rep.ok if header[0] not in _NOT_PARTIAL]
            headers.append((b"content-range", f"bytes {start}-{end}/{rep.size}".encode()))
            headers.append((b"content-length", str(end + 1 - start).encode()))
            return _body(206, headers, rep, start, end + 1 - start, head, extra)
    headers = [*rep.ok] if cacheable else _uncached(rep.ok)
    return _body(200, headers, rep, 0, rep.size, head, extra)


def _empty(status: int, headers: Headers, extra: ExtraHeaders | None) -> Answer:
    """A response without a body; `headers` must be a fresh list."""
    headers.append((b"date", http_date()))
    if extra is not None:
        headers = extra(status, headers)
    return status, headers, b""


def _body(
    status: int,
    headers: Headers,
    rep: Representation,
    start: int,
    length: int,
    head: bool,
    extra: ExtraHeaders | None,
) -> Answer | FromDisk:
    """`length` bytes of `rep` from `start`; `headers` must be a fresh list."""
    headers.append((b"date", http_date()))
    if extra is not None:
        headers = extra(status, headers)
    if head:
        return status, headers, b""
    if rep.body is not None:
        body = rep.body if length == rep.size else rep.body[start : start + length]
        return status, headers, body
    return FromDisk(status, headers, rep.fs_path, start, length)


async def _stream(send: Send, part: FromDisk) -> int:
    # Opened before the headers go out, so a vanished file is a 500, not a truncated 200.
    async with aiofiles.open(part.fs_path, "rb", opener=_open_nofollow) as file:
        await send({"type": "http.response.start", "status": part.status, "headers": part.headers})
        await file.seek(part.start)
        remaining = part.length
        while remaining:
            chunk = await file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise OSError(f"{part.fs_path} shrank after it was indexed")
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    return part.status


def _uncached(headers: Headers) -> Headers:
    return [header for header in headers if header[0] != b"cache-control"]


def _negotiate(file: StaticFile, accept_encoding: bytes | None) -> Representation:
    if accept_encoding and file.encoded:
        for coding in accepted_codings(accept_encoding):
            if rep := file.encoded.get(coding):
                return rep
    return file.identity
