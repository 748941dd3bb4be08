"""Clearing a fork flag on real processes: an organisation (``watchnet gov serve``) and two members.

chain-a loses its last event (an old copy of its log put back) and signs a second root for that
size; chain-b flags it, reports it and stops following it. A clearance for the rewritten history,
and an expired one, are refused by chain-b (audited once each) and the flag stays; the
organisation's own ``gov fork-clear draft`` refuses to draft while chain-a's log still contradicts
what chain-b verified. chain-a then restores honestly (its lost event back, the rewritten one
gone) and goes on; the organisation drafts, two key holders sign, it publishes, and chain-b
resumes following chain-a and receives a later deletion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governance.forkclear import ForkClearance
from node.cli.main import main
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.org.clearances import publish_clearance, read_decisions
from protocol.canonical import b64url_decode
from protocol.signed import SignedDocument
from tests.nodedb import node_sql
from tests.nodeproc import cli
from tests.test_federation import audit, register, unit


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("net"), ["chain-a", "chain-b"], sync_interval="1s", manifest_poll="1s"
    ).running() as network:
        yield network


def rows(node: LocalNode, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with node_sql(node.directory) as db:
        return db.rows(statement, params)


def status_of_a(b: LocalNode) -> list[tuple[Any, ...]]:
    return rows(b, "select status, tree_size from peer_state where peer = 'chain-a'")


def refusals(b: LocalNode, outcome: str) -> list[dict[str, Any]]:
    return [
        r for r in audit(b) if r["action"] == "peer.log.fork_clearance_refused" and r["outcome"] == outcome
    ]


def clearance_for(
    net: LocalNetwork, head: dict[str, Any], reports: list[str], **times: datetime
) -> SignedDocument[ForkClearance]:
    """A clearance signed by two of the three organisation keys, as a key holder would sign it,
    but without the evidence check ``gov fork-clear draft`` runs."""
    now = datetime.now(UTC).replace(microsecond=0)
    doc = SignedDocument(
        ForkClearance(
            member="chain-a",
            tree_size=head["tree_size"],
            root_hash=b64url_decode(head["root_hash"]),
            reports=tuple(reports),
            consistency=(),
            decided_at=times.get("decided_at", now),
            expires=times.get("expires", now + timedelta(days=1)),
            manifest_version=net.current_manifest().version,
        )
    )
    for key in net.org_keys[:2]:
        doc.sign(key)
    return doc


def test_a_flagged_member_is_cleared_only_for_an_honest_restore_and_then_followed_again(
    net: LocalNetwork,
) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    org = net.root / "org"
    reports = org / "reports"
    kept = register(a, unit(1))
    size = a.call("GET", "/v1/log/head")[1]["signed"]["tree_size"]
    assert wait_for(lambda: status_of_a(b) == [("ok", size)], 15)

    # chain-a loses its last event and logs another one at that index: a second root for `size`
    a.stop()
    with node_sql(a.directory) as db:
        lost_leaf = db.execute("select * from log_leaf where idx = :i", {"i": size - 1}).mappings().all()
        lost_heads = (
            db.execute("select * from tree_head where tree_size >= :i", {"i": size - 1}).mappings().all()
        )
        db.execute("delete from log_leaf where idx = :i", {"i": size - 1})
        db.execute("delete from tree_head where tree_size >= :i", {"i": size - 1})
    a.start()
    rewritten = register(a, unit(2))
    assert wait_for(lambda: status_of_a(b) == [("forked", size)], 15)
    report_ids = wait_for(lambda: [p.stem.rsplit("-", 1)[1] for p in reports.glob("fork-chain-a-*.json")], 15)
    rogue_head = a.call("GET", "/v1/log/head")[1]["signed"]
    assert rogue_head["tree_size"] == size

    # the organisation does not draft while chain-a's log contradicts what chain-b verified
    draft = org / "clearance-chain-a.draft.json"
    common = ["--manifest", str(net.manifest_path), "--by", "staff-1"]
    refused = main(
        ["gov", "fork-clear", "draft", "--member", "chain-a", "--out", str(draft),
         "--token", a.tokens["aud1"], *common]
    )  # fmt: skip
    assert refused != 0 and not draft.exists()
    assert read_decisions(reports)[-1]["outcome"] == "refused:fork_clearance_inconsistent"

    # a clearance for the rewritten history, signed anyway, is refused by chain-b, audited once
    publish_clearance(reports, clearance_for(net, rogue_head, report_ids), net.current_manifest(),
                      now=datetime.now(UTC))  # fmt: skip
    assert wait_for(lambda: refusals(b, "refused:fork_clearance_inconsistent"), 15)
    time.sleep(3.5)  # three more polls fetch the same clearance
    assert len(refusals(b, "refused:fork_clearance_inconsistent")) == 1
    assert status_of_a(b) == [("forked", size)]

    # an expired one (put in place by hand: `publish` refuses it) is refused too
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    expired = clearance_for(net, rogue_head, report_ids, decided_at=past, expires=past + timedelta(days=1))
    (reports / "clearance-chain-a.json").write_bytes(expired.to_bytes())
    assert wait_for(lambda: refusals(b, "refused:expired"), 15)
    assert status_of_a(b) == [("forked", size)]
    assert not [r for r in audit(b) if r["action"] == "peer.log.fork_cleared"]

    # chain-a restores honestly: its lost event back, the rewritten one gone; then it goes on
    a.stop()
    with node_sql(a.directory) as db:
        db.execute("delete from log_leaf where idx >= :i", {"i": size - 1})
        db.execute("delete from tree_head where tree_size >= :i", {"i": size - 1})
        db.execute("delete from event_payload where entry_id = :e", {"e": rewritten})
        db.execute("delete from entry where entry_id = :e", {"e": rewritten})
        for table, saved in (("log_leaf", lost_leaf), ("tree_head", lost_heads)):
            for row in saved:
                columns = list(row.keys())
                db.execute(
                    f"insert into {table} ({', '.join(columns)}) values ({', '.join(':' + c for c in columns)})",
                    dict(row),
                )
    a.start()
    later = register(a, unit(3))
    head = a.call("GET", "/v1/log/head")[1]["signed"]
    assert head["tree_size"] == size + 1

    # the organisation checks, two key holders sign, it publishes
    out = json.loads(
        cli("gov", "fork-clear", "draft", "--member", "chain-a", "--out", str(draft),
            "--token", a.tokens["aud1"], "--json", *common)
    )  # fmt: skip
    assert (out["tree_size"], out["reports"]) == (size + 1, sorted(report_ids))
    for i in (1, 3):
        cli("gov", "fork-clear", "sign", str(draft), "--key", str(org / f"org{i}.key"), *common)
    cli("gov", "fork-clear", "publish", str(draft), *common)
    decisions = read_decisions(reports)
    assert [d["outcome"] for d in decisions[-4:]] == ["drafted", "signed", "signed", "published"]
    assert decisions[-1]["tree_size"] == size + 1

    # chain-b clears the flag, keeps the evidence, resumes following and gets a later deletion
    assert wait_for(lambda: status_of_a(b) == [("ok", size + 1)], 20)
    records = audit(b)
    assert [r["outcome"][:8] for r in records if r["action"] == "peer.log.fork_cleared"] == ["cleared:"]
    assert [r for r in records if r["action"] == "peer.log.fork"]
    assert a.call("POST", f"/v1/entries/{kept}/delete", "off2", {"reason": "error"})[0] == 200
    assert wait_for(
        lambda: (
            rows(b, "select kind from tombstone where owner = 'chain-a' and entry_id = :e", {"e": kept})
            == [("deleted",)]
        ),
        20,
    )

    def missing() -> list[str]:
        events = a.call("GET", "/v1/propagation", "aud1")[1]["events"]
        return list(next(e for e in events if e["entry_id"] == kept and e["kind"] == "deleted")["missing"])

    assert wait_for(lambda: missing() == [], 20)
    assert later != rewritten
