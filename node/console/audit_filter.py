"""The audit log as an auditor reads it: filtered, paged, routine peer polling folded, exported as CSV.

A node records every access in its hash-chained audit log, including each member's log poll (a
``POST /v1/peer/log`` every couple of seconds per member): an idle three-member group writes
hundreds of such rows in ten minutes, and a staff member's one action is lost between them.

Folding happens when the page is read, not when the record is written. Every access stays its
own record with its own request hash, so ``watchnet audit verify`` and the chain check on the page
still cover each one, and an auditor who doubts the fold turns it off (``routine=show``) and sees
the rows themselves. With folding on (the default) routine rows are left out of the page's query
and each gap between two shown rows gets one line per peer: "chain-b polled 214 times between
t1 and t2", counted by the same filters.

Filters are exact where a value is an identifier (actor as username or account id, outcome as
``ok``/``refused``/``failed`` or a whole outcome) and a prefix for the action (``POST /v1/entries``);
times are read in the node's zone (``[console] time_zone``) and compared in UTC. Pages are keyset
pages on the record number, newest first, so a page does not shift while records are appended.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, not_
from sqlalchemy import select as sql_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from node.records.auditlog import record_hash
from node.storage.models import AuditRecord
from protocol.errors import MalformedError
from protocol.fields import format_time

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "OUTCOME_KINDS",
    "ROUTINE_ACTIONS",
    "AuditFilter",
    "AuditPage",
    "csv_cell",
    "csv_rows",
    "describe",
    "read_page",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
"""Rows per page: ``size`` is taken between 10 and this."""
MIN_PAGE_SIZE = 10
CSV_MAX_ROWS = 100_000
"""Rows one CSV export holds at most (newest first); narrow the filters for more."""
ROUTINE_ACTIONS = ("POST /v1/peer/log",)
"""Members' log polls: each member asks for our new events every ``sync_interval``."""
ROUTINE_ACTOR_PREFIX = "peer:"
OUTCOME_KINDS = ("ok", "refused", "failed")
_LOCAL_RE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?")
_TEXT_RE = re.compile(r"[\w .:/{}\-@]{1,64}")
_SEQ_RE = re.compile(r"[0-9]{1,15}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if value and not _TEXT_RE.fullmatch(value):
        raise MalformedError(
            f"query parameter {name!r}: letters, digits and . : / - _ @ {{}}, got {value!r:.30}"
        )
    return value


def _local_time(query: Mapping[str, str], name: str, zone: ZoneInfo) -> datetime | None:
    """A ``YYYY-MM-DD[THH:MM[:SS]]`` in the node's zone, as the UTC moment the database compares."""
    value = query.get(name, "").strip()
    if not value:
        return None
    if not _LOCAL_RE.fullmatch(value):
        raise MalformedError(f"query parameter {name!r}: a time like 2026-12-02T19:05, got {value!r:.30}")
    try:
        local = datetime.fromisoformat(value).replace(tzinfo=zone)
    except ValueError as e:
        raise MalformedError(f"query parameter {name!r}: {value!r:.30} is not a real date and time") from e
    return local.astimezone(UTC)


@dataclass(frozen=True)
class AuditFilter:
    """What the auditor asked for (``from_query``); empty fields match everything."""

    actor: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    fold: bool = True
    size: int = DEFAULT_PAGE_SIZE
    upto: int | None = None
    text: dict[str, str] = field(default_factory=dict)
    """The parameters as given, to put back in the form and the links."""

    @classmethod
    def from_query(cls, query: Mapping[str, str], zone: ZoneInfo) -> AuditFilter:
        size_text = query.get("size", "")
        if size_text and not _SEQ_RE.fullmatch(size_text):
            raise MalformedError(f"query parameter 'size': a number of rows, got {size_text!r:.20}")
        size = min(max(int(size_text), MIN_PAGE_SIZE), MAX_PAGE_SIZE) if size_text else DEFAULT_PAGE_SIZE
        upto_text = query.get("upto", "")
        if upto_text and not _SEQ_RE.fullmatch(upto_text):
            raise MalformedError(f"query parameter 'upto': a record number, got {upto_text!r:.20}")
        routine = query.get("routine", "fold")
        if routine not in ("fold", "show"):
            raise MalformedError(f"query parameter 'routine': fold or show, got {routine!r:.20}")
        since, until = _local_time(query, "from", zone), _local_time(query, "to", zone)
        if since is not None and until is not None and until < since:
            raise MalformedError("query parameters 'from' and 'to': 'to' is before 'from'")
        given = {k: query.get(k, "").strip() for k in ("actor", "action", "outcome", "from", "to")}
        return cls(
            actor=_text(query, "actor"),
            action=_text(query, "action"),
            outcome=_text(query, "outcome"),
            since=since,
            until=until,
            fold=routine == "fold",
            size=size,
            upto=int(upto_text) if upto_text else None,
            text={**{k: v for k, v in given.items() if v}, "routine": routine, "size": str(size)},
        )

    def conditions(self, actor_ids: Mapping[str, str]) -> list[ColumnElement[bool]]:
        """The filters as SQL conditions (the actor given as a username is matched by its id)."""
        out: list[ColumnElement[bool]] = []
        if self.actor:
            out.append(col(AuditRecord.actor) == actor_ids.get(self.actor, self.actor))
        if self.action:
            out.append(col(AuditRecord.action).startswith(self.action, autoescape=True))
        if self.outcome in OUTCOME_KINDS:
            out.append(col(AuditRecord.outcome).startswith(f"{self.outcome}:"))
        elif self.outcome:
            out.append(col(AuditRecord.outcome) == self.outcome)
        if self.since is not None:
            out.append(col(AuditRecord.at) >= self.since)
        if self.until is not None:
            out.append(col(AuditRecord.at) < self.until)
        return out


def _routine() -> ColumnElement[bool]:
    return and_(
        col(AuditRecord.action).in_(ROUTINE_ACTIONS),
        col(AuditRecord.actor).startswith(ROUTINE_ACTOR_PREFIX),
        col(AuditRecord.outcome).startswith("ok:"),
    )


@dataclass(frozen=True)
class Row:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    record_hash: str
    intact: bool


@dataclass(frozen=True)
class Folded:
    """Routine polls by one peer between two shown rows, as one line."""

    actor: str
    action: str
    count: int
    first: datetime
    last: datetime


@dataclass
class AuditPage:
    """One page: shown rows and folded lines in order, newest first, with the links to move on."""

    items: list[Row | Folded]
    matching: int
    folded: int
    newer: int | None
    older: int | None
    size: int


def _row(r: AuditRecord, names: Mapping[str, str]) -> Row:
    return Row(
        seq=r.seq,
        at=r.at,
        actor=names.get(r.actor, r.actor),
        action=r.action,
        target=r.target,
        outcome=r.outcome,
        record_hash=r.record_hash,
        intact=record_hash(r) == r.record_hash,
    )


def _folds(
    session: Session, where: list[ColumnElement[bool]], above: int | None, below: int | None
) -> list[Folded]:
    """Routine polls strictly between record ``below`` and record ``above`` (open ends for None)."""
    bounds = [*where, _routine()]
    if above is not None:
        bounds.append(col(AuditRecord.seq) < above)
    if below is not None:
        bounds.append(col(AuditRecord.seq) > below)
    rows = session.execute(
        sql_select(
            col(AuditRecord.actor),
            col(AuditRecord.action),
            func.count(),
            func.min(AuditRecord.at),
            func.max(AuditRecord.at),
        )
        .where(*bounds)
        .group_by(col(AuditRecord.actor), col(AuditRecord.action))
        .order_by(func.max(AuditRecord.seq).desc())
    ).all()
    return [Folded(a, act, int(n), first, last) for a, act, n, first, last in rows]


def read_page(session: Session, wanted: AuditFilter, names: Mapping[str, str]) -> AuditPage:
    """The page ``wanted`` names: its rows (and, folding, the polls between them) newest first."""
    ids = {name: member_id for member_id, name in names.items()}
    where = wanted.conditions(ids)
    shown = [*where, not_(_routine())] if wanted.fold else list(where)
    matching = int(session.exec(select(func.count()).select_from(AuditRecord).where(*shown)).one())
    folded = (
        int(session.exec(select(func.count()).select_from(AuditRecord).where(*where, _routine())).one())
        if wanted.fold
        else 0
    )
    page_where = list(shown)
    if wanted.upto is not None:
        page_where.append(col(AuditRecord.seq) <= wanted.upto)
    records = session.exec(
        select(AuditRecord).where(*page_where).order_by(col(AuditRecord.seq).desc()).limit(wanted.size + 1)
    ).all()
    older_record = records[wanted.size] if len(records) > wanted.size else None
    records = records[: wanted.size]
    newer_rows = session.exec(
        select(AuditRecord.seq)
        .where(*shown, col(AuditRecord.seq) > (records[0].seq if records else -1))
        .order_by(col(AuditRecord.seq))
        .limit(wanted.size)
    ).all()
    newer = int(newer_rows[-1]) if newer_rows and wanted.upto is not None else None
    items: list[Row | Folded] = []
    if wanted.fold:
        above = None if wanted.upto is None else wanted.upto + 1
        for record in records:
            items.extend(_folds(session, where, above, record.seq))
            items.append(_row(record, names))
            above = record.seq
        # the polls below the last shown row, down to the next page's first (all of them if none)
        items.extend(_folds(session, where, above, older_record.seq if older_record else None))
    else:
        items = [_row(r, names) for r in records]
    return AuditPage(
        items=items,
        matching=matching,
        folded=folded,
        newer=newer,
        older=older_record.seq if older_record else None,
        size=wanted.size,
    )


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one that starts like a formula gets a leading quote."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


CSV_HEADER = (
    "seq",
    "at_utc",
    "at_local",
    "actor",
    "actor_name",
    "action",
    "target",
    "outcome",
    "request_hash",
    "record_hash",
    "intact",
)


def csv_rows(
    session: Session,
    wanted: AuditFilter,
    names: Mapping[str, str],
    zone: ZoneInfo,
    *,
    limit: int = CSV_MAX_ROWS,
) -> Iterator[str]:
    """The filtered records as CSV text, a header then one line per record, newest first. Routine
    polls are included when they are shown (``routine=show``), else left out as on the page. The
    audit log holds no embedding or image; every cell is made formula-safe."""
    ids = {name: member_id for member_id, name in names.items()}
    where = wanted.conditions(ids)
    if wanted.fold:
        where.append(not_(_routine()))
    if wanted.upto is not None:
        where.append(col(AuditRecord.seq) <= wanted.upto)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    yield out.getvalue()
    statement = select(AuditRecord).where(*where).order_by(col(AuditRecord.seq).desc()).limit(limit)
    for r in session.exec(statement.execution_options(yield_per=500)):
        out.seek(0)
        out.truncate()
        at = r.at.replace(tzinfo=UTC)
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    r.seq,
                    format_time(at.replace(microsecond=0)),
                    at.astimezone(zone).replace(microsecond=0).isoformat(),
                    r.actor,
                    names.get(r.actor, ""),
                    r.action,
                    r.target,
                    r.outcome,
                    r.request_hash,
                    r.record_hash,
                    "yes" if record_hash(r) == r.record_hash else "no",
                )
            ]
        )
        yield out.getvalue()


def describe(wanted: AuditFilter) -> dict[str, Any]:
    """The filter's parameters for links (without the page position)."""
    return dict(wanted.text)
