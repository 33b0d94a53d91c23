"""Tables. PostgreSQL holds every fact a candidate or proctor depends on (DESIGN.md §2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from delivery_service.storage.types import BigIntPK, NullableJSON, PortableJSON, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: PortableJSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    # A disabled user cannot sign in, and their tokens stop working.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Every token carries the version it was issued under (claim `tv`); raising this (password
    # changed, tokens revoked, user disabled) ends all tokens issued before.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when an admin resets the password or an import generated it: the user may do nothing
    # but choose their own (POST /auth/password) until they have.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The OpenID provider account ("<issuer> <sub>") bound at the user's first OpenID sign-in:
    # later sign-ins match on it, not on a claim the provider's user may be able to change.
    oidc_subject: Mapped[str | None] = mapped_column(String(600), unique=True)


class Test(Base):
    __tablename__ = "tests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    time_limit_seconds: Mapped[int] = mapped_column(Integer)
    navigation_mode: Mapped[str] = mapped_column(String(16))
    attempt_limit: Mapped[int] = mapped_column(Integer, default=1)
    allow_pause: Mapped[bool] = mapped_column(Boolean, default=True)
    # integrity.policy.LockdownPolicy, validated on the way in; {} is "no lockdown".
    lockdown: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    # test_assembly.model.Blueprint (sections, selection, ordering); null: one fixed section of
    # the test's own items, in order (tests written before the item bank).
    blueprint: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    # test_assembly.model.Policies: feedback, review, negative marking, pass mark, deadline.
    policies: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    # Who may take it self-paced, and when (domain/availability.py): the students of these
    # classes (class ids as strings; empty: staff only), inside [opens_at, closes_at), with
    # the access password if one is set, from these client networks (CIDR; empty: any).
    assigned_to: Mapped[list[str]] = mapped_column(PortableJSON, default=list, server_default="[]")
    opens_at: Mapped[datetime | None]
    closes_at: Mapped[datetime | None]
    access_password_hash: Mapped[str | None] = mapped_column(String(255))
    allowed_networks: Mapped[list[str]] = mapped_column(
        PortableJSON, default=list, server_default="[]"
    )
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class BankItem(Base):
    """An item of the bank under its stable identifier; its content lives in versions (items
    rows). Editing adds a version and moves `current_item_id`; retiring keeps every version
    (attempts point at them) but takes the item out of new forms."""

    __tablename__ = "bank_items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    identifier: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    version: Mapped[int] = mapped_column(Integer)
    current_item_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]


class Item(Base):
    """One immutable item version: a test's own item (test_id) or a bank item's version
    (bank_item_id). Rows are never edited in place: attempts point at the row they got."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("test_id", "identifier"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    test_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tests.id"), index=True)
    bank_item_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_items.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer)
    identifier: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    scoring: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    tags: Mapped[list[str] | None] = mapped_column(PortableJSON)
    irt: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)


class Attempt(Base):
    """One candidate's delivery of one test. `version` gives optimistic locking (DESIGN.md §4)."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("test_id", "user_id", "attempt_number"),
        Index("ix_attempts_state_deadline", "state", "deadline"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    test_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tests.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # Set for attempts inside a proctored session (no foreign key: sessions refer to attempts).
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    attempt_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="not_started")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The frozen form: the ordered item row ids this attempt delivers.
    form: Mapped[list[str]] = mapped_column(PortableJSON)
    # The secret seed the form was drawn with, and the form's sections and choice orders
    # (test_assembly.assembly.Form): enough to rebuild and audit it. Null before the bank.
    seed: Mapped[str | None] = mapped_column(String(64))
    layout: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    # Answered essays still waiting for a teacher's grade: the result is final at 0.
    pending_grades: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    extra_seconds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None]
    max_score: Mapped[float | None]
    # Violations that marked this attempt for review: [{rule, reason, incident_id, event_ids, at}].
    review: Mapped[list[dict[str, Any]] | None] = mapped_column(PortableJSON)

    __mapper_args__ = {"version_id_col": version}


class ItemState(Base):
    """The current response and flag of one item in one attempt (the latest by client_seq)."""

    __tablename__ = "item_states"

    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    response: Mapped[Any | None] = mapped_column(NullableJSON)
    client_seq: Mapped[int | None] = mapped_column(BigInteger)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    answered_at: Mapped[datetime | None]
    # No more answers: scored on the spot (per-item feedback) or passed in an adaptive section.
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A manually scored item that was answered: it is in the grading queue until `grade` is set.
    needs_grade: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    grade: Mapped[float | None]
    graded_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    graded_at: Mapped[datetime | None]


class ResponseEvent(Base):
    """Append-only history of every answer received: who, what, when, over which connection.

    The unique (attempt_id, client_seq) makes a replayed answer write nothing twice.
    """

    __tablename__ = "response_history"
    __table_args__ = (UniqueConstraint("attempt_id", "client_seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("attempts.id"))
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    client_seq: Mapped[int] = mapped_column(BigInteger)
    response: Mapped[Any | None] = mapped_column(PortableJSON)
    applied: Mapped[bool] = mapped_column(Boolean)
    actor_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    connection_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]


class Class(Base):
    """A teaching class ("Beacon 31"): its teachers manage its sessions, its students sit them."""

    __tablename__ = "classes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(2000))
    state: Mapped[str] = mapped_column(String(16), default="active")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}


class ClassTeacher(Base):
    __tablename__ = "class_teachers"

    class_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("classes.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)


class ClassStudent(Base):
    __tablename__ = "class_students"

    class_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("classes.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    enrolled_at: Mapped[datetime]


class GroupSession(Base):
    """A proctored sitting of one test by one class, with one global timer (DESIGN.md §1, §3)."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    class_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("classes.id"), index=True)
    test_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tests.id"))
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="scheduled", index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    scheduled_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}


class Participant(Base):
    """A student's place in a session: their attempt once they have one, and accommodations."""

    __tablename__ = "session_participants"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("attempts.id"))
    first_joined_at: Mapped[datetime | None]
    extra_seconds: Mapped[int] = mapped_column(Integer, default=0)
    time_multiplier: Mapped[float] = mapped_column(default=1.0)


class LedgerEvent(Base):
    """The integrity ledger: every integrity-relevant fact, append-only, one hash chain per
    attempt (or per participant, user or session for what happens outside an attempt).

    Rows are never updated or deleted (database triggers refuse it); `hash` seals the row's
    content and the previous row's `hash` (integrity.chain). A client event carries the id the
    app gave it, so a resend from the outbox is stored once.
    """

    __tablename__ = "ledger_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        UniqueConstraint("actor_id", "client_event_id"),
        Index("ix_ledger_events_session_id_candidate_id", "session_id", "candidate_id"),
        Index("ix_ledger_events_source_server_time", "source", "server_time"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(100))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    candidate_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    reason: Mapped[str | None] = mapped_column(String(1000))
    client_event_id: Mapped[str | None] = mapped_column(String(64))
    client_time: Mapped[datetime | None]
    server_time: Mapped[datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class LedgerHead(Base):
    """The last link of each chain: appends lock it (one writer per chain at a time, across
    workers), and verification compares it with the last row, so cutting events off the end of
    a chain is caught too."""

    __tablename__ = "ledger_heads"

    chain: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
