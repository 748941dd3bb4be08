"""Alerts owed to the delivery targets (``alert_delivery``): made when the delivery duty first sees
an alert, settled when the target takes it or after ``GIVE_UP``, pruned once the alert is too old to
be given a row again. The sending is ``node.app.delivery``; the console reads ``delivery_status``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from node.storage.models import Alert, AlertDelivery

__all__ = ["GIVE_UP", "LOOKBACK", "delivery_status", "due", "enqueue", "prune", "settle"]

LOOKBACK = timedelta(minutes=10)
"""Alerts older than this when a target first sees them are not sent (a target added later gets
only what is new)."""
RETRY_FIRST = timedelta(seconds=2)
RETRY_MAX = timedelta(minutes=5)
GIVE_UP = timedelta(hours=24)
BATCH = 50


def enqueue(engine: Engine, targets: dict[str, tuple[str, ...]], now: datetime) -> int:
    """A row per (new alert, target of its site) not yet held; how many were made. ``targets``:
    each target's id and its sites (empty: every site)."""
    made = 0
    with Session(engine) as session:
        alerts = session.exec(
            select(Alert).where(col(Alert.created_at) > now - LOOKBACK).order_by(col(Alert.created_at))
        ).all()
        if not alerts:
            return 0
        held = {
            (d.alert_id, d.target)
            for d in session.exec(
                select(AlertDelivery).where(col(AlertDelivery.alert_id).in_([a.id for a in alerts]))
            ).all()
        }
        for alert in alerts:
            for target, sites in targets.items():
                if (alert.id, target) in held or (sites and alert.site not in sites):
                    continue
                session.add(AlertDelivery(alert_id=alert.id, target=target, created_at=now, next_at=now))
                made += 1
        try:
            session.commit()
        except IntegrityError:  # another worker made them just now
            session.rollback()
            return 0
    return made


def due(engine: Engine, now: datetime) -> list[tuple[AlertDelivery, Alert | None]]:
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(AlertDelivery)
            .where(col(AlertDelivery.delivered_at).is_(None), col(AlertDelivery.next_at) <= now)
            .order_by(col(AlertDelivery.next_at))
            .limit(BATCH)
        ).all()
        return [(row, session.get(Alert, row.alert_id)) for row in rows]


def settle(engine: Engine, row: AlertDelivery, now: datetime, error: str | None) -> None:
    with Session(engine) as session:
        current = session.get(AlertDelivery, (row.alert_id, row.target))
        if current is None:
            return
        current.attempts += 1
        if error is None:
            current.delivered_at, current.last_error = now, ""
        else:
            current.last_error = error[:64]
            if now - current.created_at >= GIVE_UP:
                current.delivered_at = now  # given up: kept with its error, sent no more
                current.last_error = f"gave_up:{error}"[:64]
            else:
                wait = min(RETRY_FIRST * (2 ** min(current.attempts - 1, 16)), RETRY_MAX)
                current.next_at = now + wait
        session.add(current)
        session.commit()


def prune(engine: Engine, now: datetime) -> None:
    """Forget rows settled long enough ago that their alert can no longer be given a new one."""
    with Session(engine) as session:
        session.exec(
            delete(AlertDelivery).where(
                col(AlertDelivery.delivered_at).is_not(None),
                col(AlertDelivery.created_at) < now - 2 * LOOKBACK,
            )
        )
        session.commit()


def delivery_status(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per target: rows settled and pending (owed, not yet taken) and the pending rows' last error."""
    with Session(engine) as session:
        counts = session.exec(
            select(
                col(AlertDelivery.target), func.count(), func.count(col(AlertDelivery.delivered_at))
            ).group_by(col(AlertDelivery.target))
        ).all()
        errors = dict(
            session.exec(
                select(col(AlertDelivery.target), func.max(col(AlertDelivery.last_error)))
                .where(col(AlertDelivery.delivered_at).is_(None), col(AlertDelivery.last_error) != "")
                .group_by(col(AlertDelivery.target))
            ).all()
        )
    return {
        str(t): {"settled": int(d), "pending": int(n) - int(d), "last_error": errors.get(t)}
        for t, n, d in counts
    }
