"""State a node's workers share (issue #15): console sessions, rate limits, HE evaluation keys and
private-query rounds live in the database, so a request may land on any worker.

The process tests run two real ``watchnet serve`` workers of one node directory on one PostgreSQL
database, on two ports, and send each step of a flow to a different worker: a console sign-in
through one and its pages through the other, one staff token's requests spread over both, and a
private query's round 1 on one worker with round 2 (the reveal) on the other. The unit tests run
the database-backed stores on SQLite and PostgreSQL with an injected clock, two engines standing
for two workers.
"""

from __future__ import annotations

import http.client
import re
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from governance.roles import Role
from node.config import CONFIG_FILE, ConsoleSettings, NodeConfig
from node.console.pages_registrar import Preview, QualityCheck
from node.console.session import TOUCH_SECONDS, SessionExpired, SharedSessionStore
from node.demo.network import LocalNetwork, LocalNode
from node.files import PRIVATE_FILE, write_atomic
from node.http.api import RateLimiter, SharedRateLimiter
from node.records.accounts import StaffMember
from node.records.ratelimit import RateBuckets
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import ConsoleSessionRow, RateBucket
from protocol.embedding import Embedding
from protocol.he import HEContext, QueryKeys
from protocol.private_query import (
    Candidate,
    EvaluationKeys,
    EvaluationKeysAck,
    PrivateQuery,
    PrivateScores,
    RevealRequest,
)
from protocol.query import QueryResponse
from tests.nodeproc import PASSWORD, NodeProcess
from tests.test_console import PHOTOS, photo
from tests.test_federation import register, unit
from tests.test_private_mode import send
from tests.vaults import vault_for

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PREVIEW_RE = re.compile(r'name="preview" value="([^"]+)"')
RATE = 20
SESSION_TABLE = ConsoleSessionRow.__table__  # type: ignore[attr-defined]
BUCKET_TABLE = RateBucket.__table__  # type: ignore[attr-defined]
"""The node's ``limits.requests_per_minute`` in the process tests: small, so the limit is reached."""


# ----- two workers of one node -------------------------------------------------------------------


def set_config(directory: Path, **changes: Any) -> None:
    path = directory / CONFIG_FILE
    config = NodeConfig.from_toml(path.read_text(encoding="utf-8"), directory)
    write_atomic(path, replace(config, **changes).to_toml().encode("utf-8"), mode=PRIVATE_FILE)


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[tuple[LocalNode, LocalNode]]:
    """chain-a on PostgreSQL, served by two workers; ``RATE`` requests a minute per staff account."""
    node = NodeProcess.create(tmp_path_factory.mktemp("workers"), database_url=postgres_url)
    config = NodeConfig.from_toml((node.directory / CONFIG_FILE).read_text(encoding="utf-8"), node.directory)
    set_config(node.directory, limits=replace(config.limits, requests_per_minute=RATE))
    other = node.worker()
    try:
        node.start()
        other.start()
        yield node, other
    finally:
        other.stop()
        node.stop()


class Browser:
    """One browser, cookie and all, that may send each request to a different worker."""

    def __init__(self) -> None:
        self.cookie: str | None = None
        self.body = b""

    def request(
        self, worker: LocalNode, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, str, http.client.HTTPResponse]:
        connection = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=60)
        headers = {"Content-Type": content_type} if content_type else {}
        if self.cookie:
            headers["Cookie"] = f"watchnet_console={self.cookie}"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        self.body = data
        connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            if header.startswith("watchnet_console="):
                value = header.split(";", 1)[0].split("=", 1)[1].strip('"')
                self.cookie = value or None
        return response.status, data.decode("utf-8", "replace"), response

    def get(self, worker: LocalNode, path: str) -> tuple[int, str, http.client.HTTPResponse]:
        return self.request(worker, "GET", path)

    def post(self, worker: LocalNode, path: str, fields: dict[str, str]) -> tuple[int, str, Any]:
        from urllib.parse import urlencode

        return self.request(
            worker, "POST", path, urlencode(fields).encode(), "application/x-www-form-urlencoded"
        )

    def csrf(self, worker: LocalNode, path: str) -> str:
        status, page, _ = self.get(worker, path)
        assert status == 200, (status, page[:300])
        match = CSRF_RE.search(page)
        assert match, page[:300]
        return match.group(1)

    def upload(self, worker: LocalNode, path: str, csrf: str, image: bytes) -> tuple[int, str, Any]:
        boundary = secrets.token_hex(12)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request(worker, "POST", path, body, f"multipart/form-data; boundary={boundary}")


def test_a_console_session_signed_in_through_one_worker_is_the_same_session_on_the_other(
    workers: tuple[LocalNode, LocalNode], postgres_url: str
) -> None:
    """Sign in through worker 1, use the console through worker 2 (the registrar's photo under check
    too), sign out through worker 2: worker 1 no longer accepts the cookie."""
    one, two = workers
    browser = Browser()
    token = browser.csrf(one, "/console/login?lang=en")
    status, _, response = browser.post(
        one, "/console/login?lang=en", {"csrf": token, "username": "reg1", "password": PASSWORD}
    )
    assert status == 303 and response.headers["Location"] == "/console?lang=en"
    status, page, _ = browser.get(two, "/console/registrar?lang=en")
    assert status == 200, (status, page[:300])
    assert "<strong>reg1</strong>" in page, "worker 2 serves the page signed in"
    if PHOTOS.is_dir():
        image = photo()
        csrf = browser.csrf(two, "/console/registrar?lang=en")
        status, _, response = browser.upload(two, "/console/registrar/preview?lang=en", csrf, image)
        assert status == 303 and response.headers["Location"] == "/console/registrar/preview?lang=en"
        status, page, _ = browser.get(one, "/console/registrar/preview?lang=en")
        assert status == 200 and PREVIEW_RE.search(page), "worker 1 shows the photo worker 2 checked"
        status, _, response = browser.request(one, "GET", "/console/registrar/preview/crop.jpg")
        crop = browser.body
        assert status == 200 and response.headers["Content-Type"] == "image/jpeg"
        engine = make_engine(postgres_url)
        try:
            with engine.connect() as conn:
                sealed = conn.execute(select(SESSION_TABLE.c.preview_ct)).scalars().all()
        finally:
            engine.dispose()
        assert any(sealed) and not any(crop[100:164] in s for s in sealed if s), "the crop is sealed"
    signed_in = browser.cookie
    status, _, response = browser.post(
        two, "/console/logout?lang=en", {"csrf": browser.csrf(two, "/console/registrar?lang=en")}
    )
    assert status == 303 and "reason=logged_out" in response.headers["Location"]
    browser.cookie = signed_in  # a copy of the cookie kept after sign-out
    status, _, response = browser.get(one, "/console/registrar?lang=en")
    assert status == 303 and response.headers["Location"].startswith("/console/login"), (
        "worker 1 no longer accepts a session signed out on worker 2"
    )


def test_a_staff_tokens_rate_limit_is_shared_by_the_workers(workers: tuple[LocalNode, LocalNode]) -> None:
    """``RATE`` requests a minute for one account, whichever worker each request reaches."""
    one, two = workers
    statuses: list[int] = []
    started = time.monotonic()
    for i in range(2 * RATE):
        status, _ = (one if i % 2 else two).call("GET", "/v1/entries", "off1")
        statuses.append(status)
    elapsed = time.monotonic() - started
    granted = statuses.count(200)
    refill = int(elapsed * RATE / 60) + 1
    assert set(statuses) <= {200, 429}, statuses
    assert RATE <= granted <= RATE + refill, (granted, elapsed, statuses)


# ----- private mode across workers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def private_net(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[tuple[LocalNetwork, LocalNode, LocalNode]]:
    """A group of chain-a and chain-b; chain-a runs on PostgreSQL with two workers."""
    admin = postgres_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://", 1)
    database = f"{postgres_url.rsplit('/', 1)[1]}_private"
    import psycopg

    with psycopg.connect(f"{admin}/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = f"{postgres_url.rsplit('/', 1)[0]}/{database}"
    net = LocalNetwork(
        tmp_path_factory.mktemp("private-workers"),
        ["chain-a", "chain-b"],
        sync_interval="1s",
        databases={"chain-a": url},
    )
    net.create()
    a = net.node("chain-a")
    other = a.worker()
    try:
        net.start()
        yield net, a, other
    finally:
        other.stop()
        net.destroy()
        with psycopg.connect(f"{admin}/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def near(face: Embedding, seed: int) -> Embedding:
    return Embedding.from_vector(face.vector + 0.02 * np.random.default_rng(seed).normal(size=face.dimension))


def test_round_1_on_one_worker_and_round_2_on_the_other(
    private_net: tuple[LocalNetwork, LocalNode, LocalNode],
) -> None:
    """Keys sent to worker 1 serve a round 1 on worker 2; round 1 on worker 1 is revealed on worker 2."""
    net, one, two = private_net
    face = unit(9101)
    entry_id = register(one, face)
    for seed in range(9102, 9105):
        register(one, unit(seed))
    two.start()  # after the registrations: its index is built from the database at start
    assert net.wait_private_ready(["chain-a"]) == {"chain-a": "ready"}
    he = net.current_manifest().policy.query_modes.he
    assert he is not None
    keys = QueryKeys.generate(HEContext(he))
    bundle = EvaluationKeys(
        owner="chain-b",
        key_id=keys.key_id,
        params=he,
        not_after=(datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0),
        galois_keys=keys.galois_keys,
        relin_keys=keys.relin_keys,
    )
    status, ack = send(net, "chain-b", "/v1/peer/private/keys", bundle, EvaluationKeysAck, to=one)
    assert status == 200 and ack.key_id == keys.key_id, ack
    model = net.current_manifest().policy.model.model_id
    probe = near(face, 1)

    def round_1() -> PrivateQuery:
        return PrivateQuery(
            query_id=f"qry-{secrets.token_hex(8)}",
            model_id=model,
            key_id=keys.key_id,
            ciphertexts=[keys.encrypt(probe.vector)],
        )

    on_two = round_1()
    status, scores = send(net, "chain-b", "/v1/peer/private/query", on_two, PrivateScores, to=two)
    assert status == 200, ("worker 2 answers with the keys worker 1 received", scores)
    query = round_1()
    status, scores = send(net, "chain-b", "/v1/peer/private/query", query, PrivateScores, to=one)
    assert status == 200, scores
    values = keys.decrypt(scores.results[0]).real
    positions = [int(p) for p in np.flatnonzero(values > 0)]
    assert len(positions) == 1, "one slot of the gallery matches"
    reveal = RevealRequest(
        query_id=query.query_id,
        build_id=scores.build_id,
        model_id=model,
        candidates=[Candidate(query_index=0, position=positions[0], embedding=probe)],
    )
    status, answer = send(net, "chain-b", "/v1/peer/private/reveal", reveal, QueryResponse, to=two)
    assert status == 200, ("worker 2 reveals what worker 1's round 1 found", answer)
    assert [m.entry.payload.entry_id for m in answer.matches] == [entry_id]
    wrong = replace(reveal, query_id=f"qry-{secrets.token_hex(8)}")
    status, body = send(net, "chain-b", "/v1/peer/private/reveal", wrong, QueryResponse, to=two)
    assert (status, body["error"]) == (403, "unknown_private_query"), "a reveal still needs its round 1"


# ----- the database-backed stores, on SQLite and PostgreSQL --------------------------------------


@pytest.fixture
def engines(database_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one migrated database: two workers' connection pools."""
    first = make_engine(database_url)
    upgrade(first)
    second = make_engine(database_url)
    yield first, second
    first.dispose()
    second.dispose()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_buckets_are_shared_refill_and_stay_bounded(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    clock = Clock()
    one = RateBuckets(first, "requests", 6, clock=clock, max_keys=10)
    two = RateBuckets(second, "requests", 6, clock=clock, max_keys=10)
    taken = [(one if i % 2 else two).allow("acct-1") for i in range(9)]
    assert taken == [True] * 6 + [False] * 3, "six a minute across both workers"
    assert one.exhausted("acct-1") and two.exhausted("acct-1")
    assert not one.exhausted("acct-2") and two.allow("acct-2"), "each key has its own bucket"
    assert RateBuckets(first, "refusals", 6, clock=clock).allow("acct-1"), "each limit its own keys"
    clock.now += 10.0  # one token a 10 s
    assert [one.allow("acct-1"), two.allow("acct-1")] == [True, False]
    clock.now -= 30.0  # a worker whose clock is behind refills nothing
    assert not one.allow("acct-1")
    clock.now += 30.0
    for i in range(40):
        one.allow(f"10.0.0.{i}")
    assert len(one) > 10
    clock.now += 5.0
    one.purge(clock.now)
    assert len(one) <= 10, "past max_keys the soonest-full buckets go"
    clock.now += 120.0
    one.purge(clock.now)
    assert len(one) == 0, "full buckets are the same as none"


def test_rate_buckets_grant_exactly_the_bucket_to_concurrent_workers(postgres_url: str) -> None:
    """Eight threads on two pools ask 400 times at once: 50 tokens, 50 grants (no lost update)."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    second = make_engine(postgres_url)
    clock = Clock()
    limiters = [RateBuckets(e, "race", 50, clock=clock) for e in (engine, second)]
    granted: list[bool] = []
    lock = threading.Lock()

    def hammer(index: int) -> None:
        for _ in range(50):
            result = limiters[index % 2].allow("acct-race")
            with lock:
                granted.append(result)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = []
    for _ in range(300):
        started = time.perf_counter()
        limiters[0].allow("acct-timing")
        samples.append(time.perf_counter() - started)
    engine.dispose()
    second.dispose()
    print(f"\nshared rate limit, PostgreSQL: p50 {statistics.median(samples) * 1000:.2f} ms a request")
    assert len(granted) == 400 and granted.count(True) == 50


def test_the_node_uses_shared_buckets_on_postgresql_and_memory_on_sqlite(
    engines: tuple[Engine, Engine],
) -> None:
    limiter = RateLimiter.for_node(engines[0], "requests", 60)
    if engines[0].dialect.name == "postgresql":
        assert isinstance(limiter, SharedRateLimiter)
        assert limiter.allow("acct-1", 0.0) and limiter.capacity == 60
        with engines[1].connect() as conn:
            assert conn.execute(select(BUCKET_TABLE.c.key)).scalars().all() == ["requests:acct-1"]
    else:
        assert type(limiter) is RateLimiter


SETTINGS = ConsoleSettings(idle_timeout=timedelta(minutes=15), session_lifetime=timedelta(hours=1))
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
REGISTRAR = StaffMember("acct-0000000000000001", "reg9", Role.REGISTRAR)
VAULT = vault_for("console-sessions")


def stores(engines: tuple[Engine, Engine], **options: Any) -> tuple[SharedSessionStore, SharedSessionStore]:
    return tuple(  # type: ignore[return-value]
        SharedSessionStore(SETTINGS, engine=e, vault=VAULT, preview_types=(Preview, QualityCheck), **options)
        for e in engines
    )


def a_preview() -> Preview:
    check = QualityCheck("sharpness", 123.5, 50.0, at_most=False, passed=True)
    face = Embedding.from_vector(np.random.default_rng(5).normal(size=512))
    return Preview("prv-1", b"\xff\xd8 a jpeg crop \xff\xd9" * 40, 1, (check,), (), face)


def test_a_session_is_one_row_for_every_worker(engines: tuple[Engine, Engine]) -> None:
    """Created by one store, found by the other with its staff, notices and sealed preview; ended
    by either for both."""
    one, two = stores(engines)
    token, session = one.create(T0, REGISTRAR)
    found = two.find(token, T0 + timedelta(seconds=1))
    assert found is not None and found.staff == REGISTRAR and found.csrf == session.csrf
    assert two.signed_in(token, T0) and not two.signed_in("another cookie", T0)
    found.notices.append("reg.proposed_ok")
    preview = a_preview()
    found.preview = preview
    again = one.find(token, T0 + timedelta(seconds=2))
    assert again is not None and again.notices == ["reg.proposed_ok"]
    assert isinstance(again.preview, Preview) and again.preview == preview
    assert again.preview.embedding is not None and again.preview.embedding.raw == preview.embedding.raw
    with engines[0].connect() as conn:
        row = conn.execute(select(SESSION_TABLE)).one()._mapping
    assert row["key"] != token and token not in str(dict(row))
    sealed = row["preview_ct"]
    assert preview.crop_jpeg[:16] not in sealed and preview.embedding.raw[:32] not in sealed
    assert b"sharpness" not in sealed, "the whole preview is sealed, not only its biometrics"
    again.notices.clear()
    again.preview = None
    third = two.find(token, T0 + timedelta(seconds=3))
    assert third is not None and third.notices == [] and third.preview is None
    assert one.alive(third, T0 + timedelta(seconds=3))
    two.drop(third)
    assert one.find(token, T0 + timedelta(seconds=4)) is None and not one.alive(session, T0)


def test_a_preview_sealed_for_one_row_does_not_open_in_another(engines: tuple[Engine, Engine]) -> None:
    one, _ = stores(engines)
    first, session = one.create(T0, REGISTRAR)
    session.preview = a_preview()
    second, _ = one.create(T0, REGISTRAR)
    with engines[0].begin() as conn:
        sealed = conn.execute(
            text("select preview_ct from console_session where preview_ct is not null")
        ).scalar_one()
        conn.execute(
            text("update console_session set preview_ct = :p where preview_ct is null"), {"p": sealed}
        )
    moved = one.find(second, T0)
    assert moved is not None and moved.preview is None, "a sealed preview is bound to its session"
    own = one.find(first, T0)
    assert own is not None and isinstance(own.preview, Preview)


def test_shared_sessions_time_out_touch_rarely_and_stay_bounded(engines: tuple[Engine, Engine]) -> None:
    one, two = stores(engines, max_sessions=3)
    token, _ = one.create(T0, REGISTRAR)

    def last_seen() -> datetime:
        with engines[1].connect() as conn:
            value: datetime = conn.execute(select(SESSION_TABLE.c.last_seen)).scalar_one()
        return value

    assert two.find(token, T0 + timedelta(seconds=TOUCH_SECONDS / 2)) is not None
    assert last_seen() == T0, "no write for a request within TOUCH_SECONDS"
    now = T0 + timedelta(seconds=TOUCH_SECONDS)
    assert two.find(token, now) is not None and last_seen() == now
    now = T0
    while now - T0 < timedelta(minutes=55):
        now += timedelta(minutes=10)
        assert one.find(token, now) is not None
    with pytest.raises(SessionExpired, match="old, limit 1:00:00"):
        two.find(token, now + timedelta(minutes=10))
    assert len(one) == 0, "an expired session is deleted when it is found"
    idle, _ = one.create(T0)
    with pytest.raises(SessionExpired, match="idle for"):
        two.find(idle, T0 + SETTINGS.idle_timeout + timedelta(seconds=1))
    stale, _ = one.create(T0)
    later = T0 + SETTINGS.idle_timeout + timedelta(seconds=1)
    signed = [one.create(later, REGISTRAR)[0] for _ in range(2)]
    assert len(one) == 2 and one.find(stale, later) is None, "creating a session purged the timed-out one"
    anonymous, _ = one.create(later)
    newest, _ = two.create(later + timedelta(seconds=1))
    assert len(two) == 3 and two.find(anonymous, later) is None and two.find(newest, later) is not None
    assert all(one.find(t, later) is not None for t in signed), "anonymous sessions go first"
