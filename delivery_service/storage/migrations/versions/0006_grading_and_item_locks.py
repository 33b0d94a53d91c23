"""grading and item locks: teachers' grades on item states, locked items, pending grades

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import delivery_service.storage.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = delivery_service.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("locked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("needs_grade", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("grade", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("graded_by", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("graded_at", UTC, nullable=True))
        batch_op.create_index(batch_op.f("ix_item_states_needs_grade"), ["needs_grade"])
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_grades", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("pending_grades")
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_states_needs_grade"))
        batch_op.drop_column("graded_at")
        batch_op.drop_column("graded_by")
        batch_op.drop_column("grade")
        batch_op.drop_column("needs_grade")
        batch_op.drop_column("locked")
