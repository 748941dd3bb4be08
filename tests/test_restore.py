"""Restore that never resurrects, on real processes (``node.demo.restore_drill``): a backup taken
before a deletion is restored while the deletion and a later registration exist only in the
members' copies of the log. The deleted person never matches at any moment (the node's own
``/v1/match`` and a member's query, polled throughout), the log continues at the size the members
verified with no fork at any of them, the later registration is reported lost, and the owner gets
its receipts back. On SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from node.demo.restore_drill import run_drill
from protocol.errors import MalformedError
from protocol.keys import SigningKey
from protocol.merkle import EMPTY_ROOT
from protocol.mirror import MirrorPage, MirrorRequest
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

KEY = SigningKey.generate()


def head(size: int) -> SignedDocument[TreeHead]:
    doc = SignedDocument(
        TreeHead(
            log_id="chain-a",
            tree_size=size,
            root_hash=EMPTY_ROOT if size == 0 else bytes(32),
            timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )
    doc.sign(KEY)
    return doc


def test_a_mirror_page_round_trips_and_refuses_what_it_cannot_hold() -> None:
    page = MirrorPage(head=head(3), held_size=3, first=1, events=[], witnessed_size=2)
    assert MirrorPage.from_dict(page.to_dict()).to_dict() == page.to_dict()
    empty = MirrorPage(head=None, held_size=0, first=0, events=[])
    assert "head" not in empty.to_dict() and MirrorPage.from_dict(empty.to_dict()).head is None
    assert MirrorRequest.from_dict(MirrorRequest(after=7).to_dict()).after == 7
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "held without a head": ({"head": None, "held_size": 2}, "no verified head"),
        "head and held differ": ({"head": head(4), "held_size": 3}, "held_size 3"),
        "leaves beyond what is held": ({"head": head(0), "held_size": 0, "first": 1}, "beyond the 0 held"),
        "negative witnessed": ({"witnessed_size": -1}, "witnessed_size"),
    }
    for name, (change, words) in cases.items():
        fields: dict[str, Any] = {"head": head(3), "held_size": 3, "first": 0, "events": [], **change}
        with pytest.raises(MalformedError, match=words):
            MirrorPage(**fields)
        assert name
    with pytest.raises(MalformedError, match=r"mirror-request\.limit"):
        MirrorRequest(after=0, limit=501)


@pytest.fixture(params=["sqlite", "postgres"])
def database_server(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url.rsplit("/", 1)[0]


def test_a_restore_replays_the_deletion_from_the_members_and_reports_the_later_registration_lost(
    tmp_path: Path, database_server: str | None
) -> None:
    seen = run_drill(tmp_path / "net", database_server)
    assert seen.polls > 10, "the deleted face was asked for throughout the restore"
    assert seen.deleted_matched == []
    assert seen.refused_while_restoring > 0 and seen.retry_after == {"10"}, seen
    assert "restore" in seen.readiness_failing
    assert seen.log_size_before == seen.backup_log_size + 2
    assert seen.log_size_after == seen.log_size_before
    assert seen.kept_matches_after
    assert seen.later_status == "lost" and seen.report_lost == [seen.later]
    assert len(seen.restore_audit) == 1 and "replayed=2" in seen.restore_audit[0], seen.restore_audit
    assert seen.later in seen.restore_audit[0]
    assert sorted(seen.receipts_for_deletion) == ["chain-b", "chain-c"]
    assert seen.peer_states == {
        "chain-b": ("ok", seen.size_after_new_event),
        "chain-c": ("ok", seen.size_after_new_event),
    }
    assert seen.size_after_new_event == seen.log_size_before + 1
    assert seen.failures() == []
