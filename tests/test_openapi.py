"""The OpenAPI document against the node: every real route described, a valid 3.1 document, fuzzed.

The route test builds the application as the node does and compares (method, path template)
with the document, so a route added without a description fails here. The fuzz test runs
schemathesis against a real ``watchnet serve`` process, with each operation called by a staff
account of a role the document says may call it, and checks that no answer is a server error
and that every answer (status, content type, headers, body) is one the document describes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from schemathesis.errors import InvalidSchema

from node.app.server import OPEN_POSTS, PEER_PREFIX, PUBLIC_PATHS, PUBLIC_POSTS, build_app
from node.config import NodeConfig
from node.console import is_console_path
from node.context import NodeContext
from node.http.openapi import OPENAPI_PATH, openapi_document
from tests.factories import embedding
from tests.nodeproc import STAFF, NodeProcess

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOCUMENT: dict[str, Any] = json.loads(openapi_document())
USER_FOR_ROLE = {role: user for user, role in reversed(STAFF.items())}
"""The first account of each role in ``tests.nodeproc.STAFF`` (reg1, off1, op1, aud1, adm1)."""

FUZZ_SECONDS = 75.0
"""Wall-clock budget of the fuzz run; operations not reached by then are reported as skipped."""
MAX_EXAMPLES = 100
"""Random examples per operation in the fuzzing phase (the examples and coverage phases add their own)."""
REFUSALS = ["400", "401", "403", "404", "409", "413", "429"]
"""The statuses of the node's typed refusals: what a request the document calls invalid must get."""
FUZZ_CONFIG: dict[str, Any] = {
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        "with-security-parameters": False,
    },
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True, "expected-statuses": REFUSALS},
        "ignored_auth": {"enabled": True},
    },
    "request-timeout": 30,
}
"""No positive_data_acceptance: a schema-valid embedding is still refused unless it is L2-normalised."""


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method.upper(), path, item[method]


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A node made by ``watchnet init`` with the staff of ``tests.nodeproc``; the fuzz needs high rate
    limits (it sends thousands of requests, many with bad credentials, from one address; the flood
    limits themselves are tested in test_connections.py)."""
    node = NodeProcess.create(tmp_path_factory.mktemp("openapi"))
    config = NodeConfig.load(node.directory)
    relaxed = replace(
        config,
        limits=replace(config.limits, requests_per_minute=100_000),
        connections=replace(config.connections, anonymous_refusals_per_minute=100_000),
    )
    (node.directory / "config.toml").write_text(relaxed.to_toml(), encoding="utf-8")
    return node


@pytest.fixture(scope="module")
def node(node_dir: NodeProcess) -> Iterator[NodeProcess]:
    node_dir.start()
    try:
        _seed(node_dir)
        yield node_dir
    finally:
        node_dir.stop()


def _seed(node: NodeProcess) -> None:
    """Entries, an alert, complaints, provisions and log events, so list answers have items to check."""
    entries = []
    for seed in (1, 2, 3):
        status, state = node.call(
            "POST",
            "/v1/entries",
            "reg1",
            {
                "embedding": embedding(seed).to_str(),
                "category": "shoplifting",
                "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
                "incident_date": "2026-11-01",
                "site": "shibuya-01",
            },
        )
        assert status == 201, state
        entries.append(state["entry_id"])
    for entry_id in entries[:2]:
        assert node.call("POST", f"/v1/entries/{entry_id}/approve", "off1")[0] == 200
    status, found = node.call(
        "POST", "/v1/match", "op1", {"embeddings": [embedding(1).to_str()], "site": "shibuya-01"}
    )
    assert status == 200 and found["matches"], found
    assert node.call("POST", f"/v1/entries/{entries[1]}/delete", "off1", {"reason": "error"})[0] == 200
    status, complaint = node.call(
        "POST", "/v1/complaints", None, {"category": "notice", "summary": "The sign is hard to read."}
    )
    assert status == 201, complaint
    status, complaint = node.call(
        "POST",
        "/v1/complaints",
        "off1",
        {"category": "other", "summary": "Asked by phone.", "channel": "phone"},
    )
    assert status == 201, complaint
    closed = {"outcome": "resolved", "note": "Called back."}
    assert node.call("POST", f"/v1/complaints/{complaint['id']}/close", "off1", closed)[0] == 200
    refused = {"decision": "refuse", "requester_kind": "police"}
    assert node.call("POST", "/v1/provisions", "off1", refused)[0] == 201


def test_every_registered_route_is_described_and_nothing_else(node_dir: NodeProcess) -> None:
    """Every API route; the staff console's HTML pages (session cookie and CSRF form, not API) are not in it."""
    context = NodeContext.load(node_dir.directory)
    try:
        app = build_app(context, sweep=False, federate=False)
        registered = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
            and route.method != "HEAD"
            and not is_console_path(route.resource.canonical)
        }
    finally:
        context.engine.dispose()
    described = {(method, path) for method, path, _ in operations(DOCUMENT)}
    missing = sorted(registered - described)
    extra = sorted(described - registered)
    assert not missing and not extra, (
        f"routes without a description in node/http/openapi.json: {missing}; described but not registered: {extra}"
    )


def _schemas(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every Schema Object of the document: component schemas, parameters', bodies' and headers'."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "schema" and isinstance(value, dict):
                yield here, value
            elif key == "schemas" and where == "#/components":
                yield from ((f"{here}/{name}", s) for name, s in value.items())
            else:
                yield from _schemas(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return ref.startswith("#/")


def check_document(document: dict[str, Any]) -> None:
    """Raise unless ``document`` is valid OpenAPI 3.1 with valid JSON Schemas and resolvable refs."""
    if not str(document.get("openapi", "")).startswith("3.1."):
        raise InvalidSchema(f"expected OpenAPI 3.1.x, got {document.get('openapi')!r}")
    schemathesis.openapi.from_dict(copy.deepcopy(document)).validate()
    for where, schema in _schemas(document):
        try:
            jsonschema_rs.meta.validate(schema)
        except jsonschema_rs.ValidationError as e:
            raise InvalidSchema(f"{where}: not a valid JSON Schema (2020-12): {e}") from e
    unresolved = sorted({ref for ref in _refs(document) if not _resolves(document, ref)})
    if unresolved:
        raise InvalidSchema(f"unresolvable $ref: {unresolved}")
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    if len(set(ids)) != len(ids):
        raise InvalidSchema(f"duplicate operationId: {sorted({i for i in ids if ids.count(i) > 1})}")


def test_the_document_is_valid_openapi_3_1() -> None:
    check_document(DOCUMENT)


def _broken(edit: str) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    if edit == "parameter-without-location":
        del document["paths"]["/v1/log"]["get"]["parameters"][0]["in"]
    elif edit == "bad-json-schema":
        document["components"]["schemas"]["Time"]["type"] = "timestamp"
    elif edit == "dangling-ref":
        document["paths"]["/v1/health"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ] = {"$ref": "#/components/schemas/Nothing"}
    elif edit == "openapi-3.0":
        document["openapi"] = "3.0.3"
    return document


@pytest.mark.parametrize(
    "edit", ["parameter-without-location", "bad-json-schema", "dangling-ref", "openapi-3.0"]
)
def test_the_validity_check_catches_a_broken_document(edit: str) -> None:
    with pytest.raises((InvalidSchema, jsonschema_rs.ValidationError)):
        check_document(_broken(edit))


def test_security_matches_the_access_middleware() -> None:
    """Public GETs and peer routes take no token, filing a complaint an optional one, all else a bearer token."""
    wrong = []
    for method, path, operation in operations(DOCUMENT):
        if (
            path.startswith(PEER_PREFIX)
            or (method == "GET" and path in PUBLIC_PATHS)
            or (method == "POST" and path in OPEN_POSTS)
        ):
            expected: list[dict[str, list[str]]] = []
        elif method == "POST" and path in PUBLIC_POSTS:
            expected = [{}, {"bearerAuth": []}]
        else:
            expected = [{"bearerAuth": []}]
        if operation.get("security") != expected:
            wrong.append(f"{method} {path}: {operation.get('security')} (expected {expected})")
        if expected and not operation.get("x-roles"):
            wrong.append(f"{method} {path}: no x-roles")
    assert not wrong, wrong


def test_the_document_is_served_without_login(node: NodeProcess) -> None:
    status, served = node.call("GET", OPENAPI_PATH)
    assert status == 200 and served == DOCUMENT


def _concrete(path: str) -> str:
    return path.replace("{", "x-").replace("}", "-00000000")


STAFF_OPERATIONS = [
    (method, path, tuple(operation["x-roles"]))
    for method, path, operation in operations(DOCUMENT)
    if "x-roles" in operation
]


@pytest.mark.parametrize(
    ("method", "path", "roles"), STAFF_OPERATIONS, ids=[f"{m} {p}" for m, p, _ in STAFF_OPERATIONS]
)
def test_x_roles_are_the_roles_the_node_lets_in(
    node: NodeProcess, method: str, path: str, roles: tuple[str, ...]
) -> None:
    """Every role named in ``x-roles`` gets past the permission check; every other role is ``forbidden``."""
    outcomes = {}
    for role, user in USER_FOR_ROLE.items():
        status, body = node.call(method, _concrete(path), user, {} if method == "POST" else None)
        outcomes[role] = status == 403 and isinstance(body, dict) and body.get("error") == "forbidden"
    assert outcomes == {role: role not in roles for role in USER_FOR_ROLE}


QUERY_INTEGERS = [
    ("superscript-digit", "/v1/log?after=%C2%B2", "off1"),
    ("arabic-indic-digit", "/v1/alerts?limit=%D9%A3", "op1"),
    ("beyond-sqlite-integer", "/v1/audit?after=99999999999999999999", "aud1"),
    ("beyond-safe-integer", f"/v1/log/proof/inclusion?index={2**53}", "aud1"),
    ("beyond-int-conversion-limit", "/v1/propagation?after=" + "9" * 4301, "off1"),
]
"""Query integers the fuzz led to: '²' passed ``str.isdigit`` and then failed ``int`` (500), a value
past SQLite's 64-bit INTEGER overflowed in the query (500), more than 4300 digits failed ``int``
(500), a non-ASCII digit was read as a number; and the document's bound, 2**53 - 1, holds."""


@pytest.mark.parametrize(
    ("path", "user"), [c[1:] for c in QUERY_INTEGERS], ids=[c[0] for c in QUERY_INTEGERS]
)
def test_query_integers_are_ascii_and_bounded(node: NodeProcess, path: str, user: str) -> None:
    status, error = node.call("GET", path, user)
    assert (status, error["error"]) == (400, "malformed"), error


def _fuzz_schema() -> schemathesis.BaseSchema:
    """The checked-in document, set up for a bounded, reproducible run (the node's URL is given per call).

    It is loaded at collection, where no node runs yet: the served copy is the same bytes
    (``test_the_document_is_served_without_login``).
    """
    return schemathesis.openapi.from_dict(
        copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_dict(FUZZ_CONFIG)
    )


fuzzed = _fuzz_schema()
_fuzz_started: list[float] = []


def _headers(case: schemathesis.Case[Any], node: NodeProcess) -> dict[str, str]:
    """A token of an account of the first role the operation names; none where none is needed.

    Where a token is optional (filing a complaint), staff send one only to set the ``channel``.
    """
    definition = case.operation.definition.raw
    security = definition["security"]
    staff_only_field = isinstance(case.body, dict) and "channel" in case.body
    if not security or ({} in security and not staff_only_field):
        return {}
    return {"Authorization": f"Bearer {node.tokens[USER_FOR_ROLE[definition['x-roles'][0]]]}"}


def _error_code(response: schemathesis.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@fuzzed.parametrize()
def test_the_node_answers_as_documented(case: schemathesis.Case[Any], node: NodeProcess) -> None:
    """No server error, every answer as documented, and every call past authentication and the role check."""
    if not _fuzz_started:
        _fuzz_started.append(time.monotonic())
    if time.monotonic() - _fuzz_started[0] > FUZZ_SECONDS:
        pytest.skip(f"fuzz budget of {FUZZ_SECONDS:.0f}s spent before {case.operation.label}")
    response = case.call_and_validate(base_url=node.url, headers=_headers(case, node))
    if case.method.upper() != case.operation.method.upper():
        return  # the coverage phase also tries methods the path does not have (401 without a token, else 405)
    refused = (response.status_code, _error_code(response))
    assert response.status_code != 401 and refused[1] != "forbidden", (
        f"{case.operation.label} refused the caller {refused}: the fuzz never got past the door"
    )
