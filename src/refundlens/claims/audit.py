"""The audit trail: every state change and decision as an append-only, hash-chained event.

``hash(n) = sha256(hash(n-1) ‖ "\\n" ‖ canonical JSON of event n)`` where the canonical JSON
holds the event's seq, time, actor, action, claim and data with sorted keys and no
whitespace, and ``hash(0)`` is 64 zeros. Editing an event breaks its own hash; deleting or
inserting one breaks the link of the next; deleting the last ones leaves the head row
(``audit_head``) pointing past the end. :func:`verify_chain` walks the chain and names the
first event that does not fit, and how.

Appends lock the head row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions
here begin ``IMMEDIATE``), so concurrent appenders queue and the chain never forks. An
event is written in the same transaction as the change it records: both or neither.

The chain proves order and integrity against someone who can edit rows but not also
recompute every later hash *and* the copies held outside (the decision hash printed in
evidence reports and sent in webhooks); anchoring the head elsewhere is the deployer's
choice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..store.tables import AuditEvent, AuditHead, utcnow

__all__ = ["GENESIS", "AuditProblem", "AuditReport", "append_event", "event_hash",
           "verify_chain"]

GENESIS = "0" * 64


def _canonical(seq: int, at: datetime, actor: str, action: str, claim_id: str | None,
               data: Any) -> bytes:
    body = {"seq": seq, "at": at.isoformat(timespec="microseconds"), "actor": actor,
            "action": action, "claim_id": claim_id, "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def event_hash(prev_hash: str, *, seq: int, at: datetime, actor: str, action: str,
               claim_id: str | None, data: Any) -> str:
    digest = hashlib.sha256(prev_hash.encode() + b"\n")
    digest.update(_canonical(seq, at, actor, action, claim_id, data))
    return digest.hexdigest()


_EVENTS, _HEAD = AuditEvent.__table__, AuditHead.__table__
# Built once: a statement object memoizes its cache key, so each append only binds values.
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_INSERT_EVENT = insert(_EVENTS)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)


def append_event(session: Session, *, actor: str, action: str, claim_id: str | None = None,
                 data: dict[str, Any] | None = None, at: datetime | None = None) -> AuditEvent:
    """Append one event in ``session``'s transaction and return it (``.hash`` set).

    The event is written with Core statements on the session's connection (every state
    change writes one, so this is on every request's path); the returned
    :class:`AuditEvent` is a record of what was written, not attached to ``session``.
    """
    session.flush()  # what the session holds goes first, as an ORM append would order it
    conn = session.connection()
    head_seq, head_hash = conn.execute(_LOCK_HEAD).one()
    at = at or utcnow()
    # JSON round trip: the stored data is what gets hashed, whatever types came in.
    data = json.loads(json.dumps(data or {}, default=str))
    seq = head_seq + 1
    digest = event_hash(head_hash, seq=seq, at=at, actor=actor, action=action,
                        claim_id=claim_id, data=data)
    row = {"seq": seq, "at": at, "actor": actor, "action": action, "claim_id": claim_id,
           "data": data, "prev_hash": head_hash, "hash": digest}
    conn.execute(_INSERT_EVENT, row)
    conn.execute(_MOVE_HEAD, {"seq": seq, "hash": digest})
    return AuditEvent(**row)


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    kind: str  # edited | deleted | inserted | broken | truncated
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass
class AuditReport:
    events: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "head_seq": self.head_seq,
                "head_hash": self.head_hash,
                "first_problem": self.first_problem.to_dict() if self.first_problem else None,
                "problems": [p.to_dict() for p in self.problems]}


def _events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.execute(select(AuditEvent).where(AuditEvent.seq > last)
                               .order_by(AuditEvent.seq).limit(batch)).scalars().all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(session: Session) -> AuditReport:
    """Walk the whole chain in order; every problem found, the first one first."""
    report = AuditReport()
    head = session.get(AuditHead, 1)
    seen: dict[str, int] = {GENESIS: 0}  # hash → seq, to tell insertions from deletions
    prev_hash, expected = GENESIS, 1
    for event in _events(session):
        report.events += 1
        own = event_hash(event.prev_hash, seq=event.seq, at=event.at, actor=event.actor,
                         action=event.action, claim_id=event.claim_id, data=event.data)
        if own != event.hash:
            report.problems.append(AuditProblem(
                event.seq, "edited", f"event {event.seq} ({event.action}) does not match its "
                f"hash: its content was changed after it was written"))
        if event.seq != expected:
            report.problems.append(AuditProblem(
                expected, "deleted", f"events {expected}–{event.seq - 1} are missing "
                f"(the chain jumps from {expected - 1} to {event.seq})"))
        elif event.prev_hash != prev_hash:
            if event.prev_hash in seen and seen[event.prev_hash] < event.seq - 1:
                first = seen[event.prev_hash] + 1
                report.problems.append(AuditProblem(
                    first, "inserted", f"event(s) {first}–{event.seq - 1} were inserted: event "
                    f"{event.seq} follows event {seen[event.prev_hash]} in the chain"))
            else:
                report.problems.append(AuditProblem(
                    event.seq, "broken", f"event {event.seq} does not follow event "
                    f"{event.seq - 1}: event {event.seq - 1} was edited and re-hashed, or "
                    f"events between them were deleted"))
        seen[event.hash] = event.seq
        prev_hash, expected = event.hash, event.seq + 1
    report.head_seq = head.seq if head else 0
    report.head_hash = head.hash if head else GENESIS
    if head is not None and (head.seq != expected - 1 or head.hash != prev_hash):
        report.problems.append(AuditProblem(
            expected, "truncated", f"the chain head records {head.seq} events ending in "
            f"{head.hash[:12]}…, but the chain ends at event {expected - 1}: events at the "
            f"end were deleted, or the head was changed"))
    # by position in the chain: an insertion is found at the event after it (whose renumbered
    # seq also reads as an edit), but the first bad event is the inserted one
    report.problems.sort(key=lambda p: p.seq)
    return report
