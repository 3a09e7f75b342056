from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeproxy.edge.loader import RouteHandlers, split_spec
from edgeproxy.edge.modules import ROOT_PACKAGE
from edgeproxy.exceptions import HandlerLoadError
from tests.edge.conftest import LoadSite, write_files

COUNTER = """
from starlette.responses import PlainTextResponse

CALLS = 0

async def on_request(request, env, ctx):
    global CALLS
    CALLS += 1
    return PlainTextResponse(f"{VERSION} {CALLS}")
"""


def body_of(response: Any) -> str:
    return bytes(response.body).decode()


def call(site: Any, path: str) -> str:
    chain = site.match(path, "GET")
    assert chain is not None
    assert chain.handler is not None
    return body_of(asyncio.run(chain.handler.func(None, None, None)))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "import os\n\ndef broken(:\n    pass\n",
            ["functions/api/bad.py: could not be loaded", "line 3", "SyntaxError"],
            id="syntax-error-with-line",
        ),
        pytest.param(
            "import os\nimport no_such_module_for_edge_tests\n",
            [
                "functions/api/bad.py: could not be loaded",
                'api/bad.py", line 2, in <module>',
                "ModuleNotFoundError: No module named 'no_such_module_for_edge_tests'",
            ],
            id="import-error-with-traceback",
        ),
        pytest.param(
            "VALUE = 1 / 0\n",
            ['api/bad.py", line 1', "ZeroDivisionError"],
            id="module-level-exception",
        ),
        pytest.param(
            "from .._missing import thing\n",
            ["functions/api/bad.py", "No module named"],
            id="missing-relative-import",
        ),
        pytest.param(
            "def on_request(request, env, ctx):\n    return None\n",
            ["functions/api/bad.py: on_request must be an `async def` function"],
            id="sync-function-refused",
        ),
        pytest.param(
            "async def on_request_get(request):\n    return None\n",
            ["on_request_get(request) must accept (request, env, ctx)"],
            id="wrong-signature",
        ),
        pytest.param(
            "on_request = 'not a function'\n",
            ["on_request must be an `async def` function", "not str"],
            id="not-callable",
        ),
    ],
)
def test_site_load_errors(load_site: LoadSite, source: str, expected: list[str]) -> None:
    with pytest.raises(HandlerLoadError) as caught:
        load_site({"functions/api/bad.py": source, "functions/api/ok.py": COUNTER})
    for text in expected:
        assert text in str(caught.value)
    assert caught.value.file == "functions/api/bad.py"
    assert "importlib._bootstrap" not in str(caught.value)


def test_failed_load_leaves_no_modules(load_site: LoadSite) -> None:
    before = {name for name in sys.modules if name.startswith(ROOT_PACKAGE + ".")}
    with pytest.raises(HandlerLoadError):
        load_site({"functions/a.py": "VERSION = 1\n" + COUNTER, "functions/b.py": "1/0\n"})
    assert {name for name in sys.modules if name.startswith(ROOT_PACKAGE + ".")} == before


def test_deployments_are_isolated(load_site: LoadSite) -> None:
    old = load_site({"functions/api/hello.py": "VERSION = 'v1'\n" + COUNTER}, deploy_id="abc")
    new = load_site({"functions/api/hello.py": "VERSION = 'v2'\n" + COUNTER}, deploy_id="abc")
    assert [call(old, "/api/hello") for _ in range(3)] == ["v1 1", "v1 2", "v1 3"]
    assert call(new, "/api/hello") == "v2 1"
    assert call(old, "/api/hello") == "v1 4"


def test_relative_imports_within_a_deployment(load_site: LoadSite) -> None:
    site = load_site(
        {
            "functions/_shared/names.py": "NAME = 'shared'\n",
            "functions/api/_util.py": "def greet(name):\n    return f'hello {name}'\n",
            "functions/api/hello.py": """
                from starlette.responses import PlainTextResponse

                from .._shared.names import NAME
                from ._util import greet

                async def on_request(request, env, ctx):
                    return PlainTextResponse(greet(NAME))
            """,
        }
    )
    assert call(site, "/api/hello") == "hello shared"


def test_file_next_to_its_directory_is_still_a_route(load_site: LoadSite) -> None:
    site = load_site(
        {
            "functions/users.py": "VERSION = 'list'\n" + COUNTER,
            "functions/users/[id].py": "VERSION = 'one'\n" + COUNTER,
        }
    )
    assert call(site, "/users") == "list 1"
    assert call(site, "/users/7") == "one 1"


def test_unload_forgets_modules_and_writes_no_bytecode(load_site: LoadSite) -> None:
    site = load_site({"functions/api/hello.py": "VERSION = 1\n" + COUNTER})
    assert site.package is not None
    name = site.package.name
    assert f"{name}.api.hello" in sys.modules
    site.close()
    assert not [n for n in sys.modules if n == name or n.startswith(name + ".")]
    assert not site.package.loaded
    with pytest.raises(ModuleNotFoundError):
        __import__(f"{name}.api.hello")
    site.close()  # idempotent
    functions = Path(site.package.root)
    assert not list(functions.rglob("__pycache__"))
    assert not [p for p in sys.path if p.startswith(str(functions))]


ROUTE_HANDLER = """
from starlette.responses import PlainTextResponse

async def check(request, env, ctx):
    return PlainTextResponse("check")

async def on_request_post(request, env, ctx):
    return PlainTextResponse("post")

def helper():
    pass
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "config",
        {
            "handlers/auth.py": ROUTE_HANDLER,
            "handlers/helpers_only.py": "def helper():\n    pass\n",
            "evil.py": ROUTE_HANDLER,
        },
    )


def test_route_handler_named_function_answers_every_method(config_dir: Path) -> None:
    handlers = RouteHandlers(config_dir)
    try:
        module = handlers.load("handlers/auth.py:check")
        for method in ("GET", "POST", "DELETE"):
            chain = module.chain(method)
            assert chain is not None
            assert chain.handler is not None
            assert chain.handler.label == "handlers/auth.py:check"
        variants = handlers.load("handlers/auth.py")
        assert variants.chain("GET") is None
        post = variants.chain("POST")
        assert post is not None
        assert post.handler is not None
        assert post.handler.label == "handlers/auth.py:on_request_post"
    finally:
        handlers.close()


@pytest.mark.parametrize(
    ("spec", "base", "message"),
    [
        pytest.param(
            "handlers/auth.py:nope",
            None,
            "handlers/auth.py: has no function 'nope' (defines: check, helper, on_request_post)",
            id="missing-function",
        ),
        pytest.param(
            "handlers/auth.py:helper",
            None,
            "helper must be an `async def` function",
            id="sync-function",
        ),
        pytest.param("handlers/none.py", None, "no such Python file", id="missing-file"),
        pytest.param("handlers/helpers_only.py", None, "defines no handler", id="no-handlers"),
        pytest.param(
            "../config/evil.py:check", "handlers", "is outside the handler directory", id="outside"
        ),
    ],
)
def test_route_handler_errors(config_dir: Path, spec: str, base: str | None, message: str) -> None:
    handlers = RouteHandlers(config_dir, base_dir=config_dir / base if base else None)
    try:
        with pytest.raises(HandlerLoadError) as caught:
            handlers.load(spec if base is None else f"handlers/{spec}")
        assert message in str(caught.value)
    finally:
        handlers.close()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("a/b.py:run", ("a/b.py", "run"), id="with-function"),
        pytest.param("a/b.py", ("a/b.py", None), id="module"),
        pytest.param("c:/x.py", ("c:/x.py", None), id="colon-in-path"),
    ],
)
def test_split_spec(spec: str, expected: tuple[str, str | None]) -> None:
    assert split_spec(spec) == expected
