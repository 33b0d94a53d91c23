"""item bank: bank items with immutable versions, test blueprints and policies, attempt seeds

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import delivery_service.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = delivery_service.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bank_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("current_item_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_bank_items_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_items")),
        sa.UniqueConstraint("identifier", name=op.f("uq_bank_items_identifier")),
    )
    with op.batch_alter_table("bank_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bank_items_state"), ["state"])
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.alter_column("test_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(sa.Column("bank_item_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch_op.add_column(sa.Column("tags", JSON, nullable=True))
        batch_op.add_column(sa.Column("irt", JSON, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_items_bank_item_id_bank_items"), "bank_items", ["bank_item_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_items_bank_item_id"), ["bank_item_id"])
    with op.batch_alter_table("tests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blueprint", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("policies", JSON, nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seed", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("layout", JSON, nullable=True))
        batch_op.add_column(sa.Column("passed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("passed")
        batch_op.drop_column("layout")
        batch_op.drop_column("seed")
    with op.batch_alter_table("tests", schema=None) as batch_op:
        batch_op.drop_column("policies")
        batch_op.drop_column("blueprint")
    op.execute("DELETE FROM items WHERE test_id IS NULL")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_bank_item_id"))
        batch_op.drop_constraint(batch_op.f("fk_items_bank_item_id_bank_items"), type_="foreignkey")
        batch_op.drop_column("irt")
        batch_op.drop_column("tags")
        batch_op.drop_column("version")
        batch_op.drop_column("bank_item_id")
        batch_op.alter_column("test_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("bank_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_items_state"))
    op.drop_table("bank_items")
