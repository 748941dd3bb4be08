"""A member cannot flood another member's request queue (issue 14, section 6).

Every forward of a data-subject request opens a request with a legal deadline at the owner. The
owner treats (origin, request id) as the forward's identity (one request, whatever the number of
copies; a unique constraint decides between workers), opens at most
``limits.forwards_per_member_per_day`` new ones per member in 24 hours, and counts forwards in
its transparency report. Real processes for the network behaviour, with forwards sealed by a
member's own keys where the test plays the hostile member; SQLite and PostgreSQL for the race.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from sqlmodel.sql.sqltypes import UTCDateTime

from governance.requests import RequestKind
from node.casework.subject_requests import ForwardRateLimited, SubjectRequests
from node.config import NodeConfig
from node.demo.network import LocalNetwork, wait_for
from node.files import write_atomic
from node.storage import migrate
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import EntryRow, SubjectRequest
from protocol.message import PeerKeys, compose_sealed, decode_body, open_sealed
from protocol.subject import ForwardAck, ForwardedRequest
from tests.test_federation import _photo, _register_photo, audit
from tests.vaults import vault_for

OWNER, FLOODER, OTHER = "chain-a", "chain-b", "chain-c"
LIMIT = 3
"""chain-a's ``limits.forwards_per_member_per_day`` in this module."""
COPIES = 20


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    network = LocalNetwork(tmp_path_factory.mktemp("forwards"), [OWNER, FLOODER, OTHER], sync_interval="1s")
    network.create()
    directory = network.node(OWNER).directory
    config = NodeConfig.load(directory)
    limits = replace(config.limits, forwards_per_member_per_day=LIMIT)
    write_atomic(directory / "config.toml", replace(config, limits=limits).to_toml().encode())
    try:
        network.start()
        yield network
    finally:
        network.destroy()


@pytest.fixture(scope="module")
def owner_entry(net: LocalNetwork) -> str:
    return _register_photo(net.node(OWNER), _photo("yaoming.jpg"))


def forwards_tally(net: LocalNetwork) -> dict[str, int]:
    """chain-a's report for this month: ``subject_requests.forwards`` (empty if it has none)."""
    period = datetime.now(UTC).strftime("%Y-%m")
    status, report = net.node(OWNER).call("GET", f"/v1/report?period={period}", "aud1")
    assert status == 200, report
    return dict(report["signed"]["subject_requests"].get("forwards", {}))


def send_forward(
    net: LocalNetwork, sender: str, request_id: str, entry_id: str, kind: str = "deletion"
) -> tuple[int, Any]:
    """A forward sealed with ``sender``'s own keys straight to chain-a, as a hostile member sends it;
    the opened ``ForwardAck`` when chain-a answers 200, else its JSON error."""
    manifest = net.current_manifest()
    owner = manifest.member(OWNER)
    assert owner is not None
    node = net.node(sender)
    body = ForwardedRequest(
        origin=sender,
        request_id=request_id,
        kind=kind,
        entry_id=entry_id,
        entry_version=1,
        identity_check="drivers-licence",
    )
    raw = compose_sealed(
        sender=sender,
        recipient=OWNER,
        manifest_version=manifest.version,
        purpose="data-subject-request",
        body=body,
        issued_at=datetime.now(UTC),
        signing_key=node.signing_key(),
        sender_key=node.encryption_key(),
        recipient_key=owner.encryption_key,
    )
    status, answer = net.node(OWNER).call("POST", "/v1/peer/subject-request", raw=raw)
    if status != 200:
        return status, answer
    signed = open_sealed(
        json.dumps(answer).encode(),
        recipient_id=sender,
        recipient_key=node.encryption_key(),
        lookup_sender=lambda _: PeerKeys(owner.signing_key, owner.encryption_key),
    )
    ack = decode_body(signed.payload, {ForwardAck.TYPE: ForwardAck})
    assert isinstance(ack, ForwardAck) and ack.request_id == request_id
    return status, ack


def requests_from(net: LocalNetwork, origin: str) -> list[dict[str, Any]]:
    status, body = net.node(OWNER).call("GET", "/v1/requests", "aud1")
    assert status == 200, body
    return [r for r in body["requests"] if r["recorded_by"] == f"peer:{origin}"]


def test_one_request_forwarded_twenty_times_opens_one_request_at_the_owner(
    net: LocalNetwork, owner_entry: str
) -> None:
    """Through the real path: chain-b's officer presses "forward" 20 times on one request."""
    b = net.node(FLOODER)
    before = forwards_tally(net)
    status, made = b.call(
        "POST",
        "/v1/requests",
        "off1",
        {"kind": "deletion", "identity_check": "drivers-licence", "image": _photo("yaoming.jpg", flip=True)},
    )
    assert status == 201, made
    status, searched = b.call("POST", f"/v1/requests/{made['id']}/search", "off1")
    assert status == 200 and (OWNER, owner_entry) in {(i["owner"], i["entry_id"]) for i in searched["report"]}
    acks = []
    for _ in range(COPIES):
        status, forwarded = b.call("POST", f"/v1/requests/{made['id']}/forward", "off1")
        assert status == 200, forwarded
        acks += [
            f.get("owner_request_id", f.get("reason")) for f in forwarded["forwarded"] if f["owner"] == OWNER
        ]
    opened = requests_from(net, FLOODER)
    assert len(opened) == 1, f"{COPIES} forwards opened {len(opened)} requests at the owner"
    assert acks == [opened[0]["id"]] * COPIES
    assert opened[0]["status"] == "open" and [i["entry_id"] for i in opened[0]["report"]] == [owner_entry]
    after = wait_for(lambda: (t := forwards_tally(net)).get("repeated", 0) >= COPIES - 1 and t, 5)
    assert after, "the report does not count forwards"
    assert after["opened"] - before.get("opened", 0) == 1
    assert after["repeated"] - before.get("repeated", 0) == COPIES - 1


def test_a_repeat_with_another_entry_joins_the_open_request_and_another_kind_is_a_conflict(
    net: LocalNetwork, owner_entry: str
) -> None:
    second = _register_photo(net.node(OWNER), _photo("t1.jpg"))
    request_id = f"req-{secrets.token_hex(8)}"
    status, first = send_forward(net, FLOODER, request_id, owner_entry)
    assert status == 200, first
    status, merged = send_forward(net, FLOODER, request_id, second)
    assert status == 200 and merged.owner_request_id == first.owner_request_id
    view = net.node(OWNER).call("GET", f"/v1/requests/{first.owner_request_id}", "aud1")[1]
    assert sorted(i["entry_id"] for i in view["report"]) == sorted([owner_entry, second])
    status, refused = send_forward(net, FLOODER, request_id, owner_entry, kind="correction")
    assert (status, refused["error"]) == (409, "forward_conflict"), refused
    assert first.owner_request_id in refused["message"] and "deletion" in refused["message"]
    assert sum(r["id"] == first.owner_request_id for r in requests_from(net, FLOODER)) == 1


def test_more_new_forwards_than_the_daily_limit_are_refused_and_counted(
    net: LocalNetwork, owner_entry: str
) -> None:
    before = forwards_tally(net)
    request_ids = [f"req-{secrets.token_hex(8)}" for _ in range(LIMIT + 1)]
    answers = [send_forward(net, OTHER, rid, owner_entry) for rid in request_ids]
    assert [s for s, _ in answers] == [200] * LIMIT + [429], answers[-1]
    assert answers[-1][1]["error"] == "forward_rate_limited"
    assert f"limit is {LIMIT}" in answers[-1][1]["message"]
    assert len({a.owner_request_id for _, a in answers[:LIMIT]}) == LIMIT
    assert len(requests_from(net, OTHER)) == LIMIT
    status, again = send_forward(net, OTHER, request_ids[0], owner_entry)  # a repeat is still answered
    assert status == 200 and again.owner_request_id == answers[0][1].owner_request_id
    assert any(
        r["action"] == "POST /v1/peer/subject-request"
        and r["actor"] == f"peer:{OTHER}"
        and r["outcome"] == "refused:forward_rate_limited"
        for r in audit(net.node(OWNER))
    )
    status, refused = send_forward(net, OTHER, f"req-{secrets.token_hex(8)}", owner_entry)
    assert (status, refused["error"]) == (429, "forward_rate_limited")
    after = forwards_tally(net)
    assert after["opened"] - before.get("opened", 0) == LIMIT
    assert after["rate_limited"] - before.get("rate_limited", 0) == 2
    assert after["repeated"] - before.get("repeated", 0) == 1
    status, page = net.node(OWNER).call(
        "GET", f"/v1/report?period={datetime.now(UTC):%Y-%m}&format=html", "aud1"
    )
    assert status == 200 and "refused: over the member&#x27;s daily limit" in page


# -- the database: one request per (origin, request id), also between two workers ------------

T = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _entry(engine: Any, entry_id: str) -> None:
    with Session(engine) as session:
        session.add(
            EntryRow(
                entry_id=entry_id,
                version=1,
                status="active",
                category="shoplifting",
                site="store-01",
                evidence_kind="police-report",
                registrar="acct-reg",
                proposed_at=T,
                registered_at=T,
                expires_at=T + timedelta(days=180),
            )
        )
        session.commit()


def _worker(engine: Any) -> SubjectRequests:
    """One worker's view of the node: its own process lock, the shared database."""
    return SubjectRequests(engine, vault_for(str(engine.url)), "chain-a", threading.RLock())


def _forward(worker: SubjectRequests, request_id: str, now: datetime = T, limit: int = 50) -> Any:
    return worker.open_forwarded(
        origin="chain-b",
        request_id=request_id,
        kind=RequestKind.DELETION,
        entry_id="ent-0001",
        owner_name="Chain A",
        daily_limit=limit,
        now=now,
    )


def test_two_workers_racing_on_one_forward_open_one_request(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        _entry(engine, "ent-0001")
        first, second = _worker(engine), _worker(engine)
        opened = _forward(first, "req-b-1")
        # worker 2 looked before worker 1 committed: it finds nothing and inserts, and the unique
        # constraint, not a lock it shares with worker 1, makes it answer with worker 1's request
        looked: list[str] = []

        def too_early(session: Session, origin: str, request_id: str) -> SubjectRequest | None:
            looked.append(request_id)
            if len(looked) == 1:
                return None
            return SubjectRequests._forwarded(second, session, origin, request_id)

        monkeypatch.setattr(second, "_forwarded", too_early)
        raced = _forward(second, "req-b-1")
        assert (raced.owner_request_id, raced.outcome, looked) == (
            opened.owner_request_id,
            "repeated",
            ["req-b-1"] * 2,
        )
        with Session(engine) as session:
            rows = session.exec(select(SubjectRequest)).all()
            assert [(r.id, r.forwarded_origin, r.forwarded_request_id) for r in rows] == [
                (opened.owner_request_id, "chain-b", "req-b-1")
            ]
            session.add(replace_row(rows[0], "req-other"))
            with pytest.raises(IntegrityError):
                session.commit()
    finally:
        engine.dispose()


def replace_row(row: SubjectRequest, new_id: str) -> SubjectRequest:
    return SubjectRequest(**{**row.model_dump(), "id": new_id})


def test_the_limit_counts_the_last_24_hours_of_new_requests_only(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        _entry(engine, "ent-0001")
        worker = _worker(engine)
        ids = [_forward(worker, f"req-b-{i}", T + timedelta(hours=i), limit=2) for i in range(2)]
        assert [r.outcome for r in ids] == ["opened", "opened"]
        assert _forward(worker, "req-b-0", T + timedelta(hours=2), limit=2).outcome == "repeated"
        with pytest.raises(ForwardRateLimited, match=r"forwarded 2 requests after .* the limit is 2"):
            _forward(worker, "req-b-2", T + timedelta(hours=23), limit=2)
        assert _forward(worker, "req-b-2", T + timedelta(hours=24), limit=2).outcome == "opened"
    finally:
        engine.dispose()


def test_the_migration_keeps_old_forwards_and_their_origin(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(migrate.__file__).parents[1] / "migrations"))
        config.attributes["engine"] = engine
        command.upgrade(config, "0007")
        old = sa.table(
            "subject_request",
            *(
                sa.column(name, sa.String)
                for name in ("id", "kind", "status", "identity_check", "recorded_by")
            ),
            sa.column("received_at", UTCDateTime()),
            sa.column("deadline", UTCDateTime()),
        )
        with engine.begin() as conn:
            for rid, recorded_by, check in (
                ("req-old-1", "peer:chain-b", "forwarded-by-chain-b"),
                ("req-old-2", "acct-off1", "passport"),
            ):
                conn.execute(
                    old.insert().values(
                        id=rid,
                        kind="deletion",
                        status="open",
                        identity_check=check,
                        recorded_by=recorded_by,
                        received_at=T,
                        deadline=T + timedelta(days=14),
                    )
                )
        upgrade(engine)
        with Session(engine) as session:
            rows = {
                r.id: (r.forwarded_origin, r.forwarded_request_id)
                for r in session.exec(select(SubjectRequest))
            }
        assert rows == {"req-old-1": ("chain-b", None), "req-old-2": (None, None)}
        _entry(engine, "ent-0001")
        assert _forward(_worker(engine), "req-b-9", T, limit=2).outcome == "opened"
        with pytest.raises(ForwardRateLimited, match="forwarded 2 requests"):
            _forward(_worker(engine), "req-b-10", T, limit=2)  # the old forward counts towards the limit
        command.downgrade(config, "0007")
        command.upgrade(config, "head")
    finally:
        engine.dispose()
