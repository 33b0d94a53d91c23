"""integrity ledger: one hash-chained, append-only store replaces session_events and audit_log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import delivery_service.storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = delivery_service.storage.types.UTCDateTime(timezone=True)

# Rows of the ledger can be added, never changed or removed: the database refuses, whoever asks.
# (A superuser can still disable the trigger; the hash chain is what catches that.)
PG_APPEND_ONLY = (
    """
CREATE FUNCTION ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$
""",
    "CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events "
    "FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()",
)
SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER ledger_events_no_update BEFORE UPDATE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: UPDATE refused'); END",
    "CREATE TRIGGER ledger_events_no_delete BEFORE DELETE ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: DELETE refused'); END",
)


def upgrade() -> None:
    bind = op.get_bind()
    # The old stores were never released with data in them; refuse rather than drop anything.
    for table in ("session_events", "audit_log"):
        rows = bind.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        if rows:
            raise RuntimeError(
                f"{table} holds {rows} rows; export them before upgrading to the ledger (0004)"
            )
    op.create_table(
        "ledger_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chain", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("candidate_id", sa.Uuid(), nullable=True),
        sa.Column("attempt_id", sa.Uuid(), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("client_event_id", sa.String(length=64), nullable=True),
        sa.Column("client_time", UTC, nullable=True),
        sa.Column("server_time", UTC, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_events")),
        sa.UniqueConstraint(
            "actor_id",
            "client_event_id",
            name=op.f("uq_ledger_events_actor_id_client_event_id"),
        ),
        sa.UniqueConstraint("chain", "seq", name=op.f("uq_ledger_events_chain_seq")),
    )
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_events_attempt_id"), ["attempt_id"])
        batch_op.create_index(
            "ix_ledger_events_session_id_candidate_id", ["session_id", "candidate_id"]
        )
        batch_op.create_index("ix_ledger_events_source_server_time", ["source", "server_time"])
    op.create_table(
        "ledger_heads",
        sa.Column("chain", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_ledger_heads")),
    )
    append_only = PG_APPEND_ONLY if bind.dialect.name == "postgresql" else SQLITE_APPEND_ONLY
    for statement in append_only:
        op.execute(statement)

    op.drop_table("session_events")
    op.drop_table("audit_log")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review", JSON, nullable=True))
    with op.batch_alter_table("tests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lockdown", JSON, nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    raise RuntimeError(
        "0004 cannot be undone: the integrity ledger is append-only evidence; restore a backup "
        "taken before the upgrade instead"
    )
