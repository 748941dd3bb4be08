"""The owner's witnessing pass on a real database: the witnesses that last cosigned the same size
share one add-checkpoint request, so a pass over 19 witnesses reads the log as often as one
request does, and every request is byte for byte the one built for that witness alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.records.eventlog import open_event_log
from node.records.witnessing import Checkpoints
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import Cosignature
from protocol.events import EventKind
from tests.factories import NODE_A_SIGNING, T0
from tests.test_sync_apply import MANIFEST, event, own_head, own_log


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    return engine


def leaf_reads(engine: Engine) -> list[str]:
    """Every statement that reads ``log_leaf`` from now on."""
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "log_leaf" in statement:
            reads.append(statement)

    sqlalchemy_event.listen(engine, "before_cursor_execute", count)
    return reads


def test_a_pass_builds_one_request_per_size_the_witnesses_last_cosigned(engine: Engine) -> None:
    events = [event(EventKind.REGISTERED, f"ent-{i:08d}") for i in range(23)]
    own_log(engine, *events)
    own_head(engine, *events)
    checkpoints = Checkpoints(engine, open_event_log(engine), "chain-a", NODE_A_SIGNING)
    own = checkpoints.current(MANIFEST)
    assert own is not None and own.checkpoint.size == 23
    alone = {size: checkpoints.request_for(own, size).to_bytes() for size in (0, 13, 23)}

    reads = leaf_reads(engine)
    checkpoints.request_for(own, 13)
    one_request = len(reads)
    assert one_request > 0
    reads.clear()
    requests = checkpoints.requests_for(own, [13] * 19 + [0, 23])
    assert len(reads) == one_request
    assert {size: r.to_bytes() for size, r in requests.items()} == alone


def test_the_sizes_last_cosigned_are_read_for_every_witness_at_once(engine: Engine) -> None:
    checkpoints = Checkpoints(engine, open_event_log(engine), "chain-a", NODE_A_SIGNING)
    assert checkpoints.cosigned_sizes() == {}
    with Session(engine) as session:
        for witness, size in (("chain-b", 13), ("chain-c", 23)):
            session.add(Cosignature(witness=witness, tree_size=size, line="", received_at=T0))
        session.commit()
    assert checkpoints.cosigned_sizes() == {"chain-b": 13, "chain-c": 23}
