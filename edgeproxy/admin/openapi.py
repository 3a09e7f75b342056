"""The OpenAPI description of the admin API, served at `/_edge/api/openapi.json`."""

from __future__ import annotations

from typing import Any

from edgeproxy.admin.objects import OPENAPI_PATHS as OBJECT_PATHS

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "edgeproxy admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/_edge/api/sites": {"get": {"summary": "Sites with their hosts and aliases"}},
        "/_edge/api/logs": {
            "get": {
                "summary": "Edge handler output (print, logging, reports) of ?site= or ?route=; "
                "&since=EPOCH; &follow=1 streams NDJSON"
            }
        },
        "/_edge/api/sites/{site}/deploys": {
            "get": {"summary": "Deployments, newest first, with the aliases naming each"},
            "post": {
                "summary": "Start a deploy: send {branch, commit, message, files: {path: sha256}}; "
                "answers {upload, required: [sha256]}"
            },
        },
        "/_edge/api/sites/{site}/deploys/{deploy_id}": {
            "get": {"summary": "One deployment (full ID or 8-hex short ID)"}
        },
        "/_edge/api/sites/{site}/uploads/{upload}/files/{sha256}": {
            "put": {"summary": "Upload one required file; its bytes must hash to {sha256}"}
        },
        "/_edge/api/sites/{site}/uploads/{upload}/finalize": {
            "post": {"summary": "Create and publish the deployment; answers it with its URLs"}
        },
        "/_edge/api/sites/{site}/deploys/{deploy_id}/log": {
            "get": {"summary": "The build log of a deployment built from git (text)"}
        },
        "/_edge/api/sites/{site}/hooks/push": {
            "post": {
                "summary": "Deploy hook: a GitHub-style push event signed with X-Hub-Signature-256 "
                "(no bearer token); answers 202 {build, url}",
                "security": [],
            }
        },
        "/_edge/api/sites/{site}/builds/{build_id}": {
            "get": {"summary": "A deploy-hook build: queued, running, succeeded or failed"}
        },
        "/_edge/api/sites/{site}/rollback": {
            "post": {"summary": "Point production at {deploy_id} (any earlier deployment)"}
        },
        "/_edge/api/sites/{site}/aliases/{alias}": {
            "put": {"summary": "Point an alias at {deploy_id}"},
            "delete": {"summary": "Remove an alias (not production)"},
        },
        **OBJECT_PATHS,
    },
}
