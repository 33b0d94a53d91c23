"""accounts and who may take what, when: users who must change their password at next sign-in
(an admin reset it, or it was generated on import), and the OpenID provider account a user is
bound to (`oidc_subject`, issuer and subject); a test's audience (`assigned_to`, class
ids), window (`opens_at`/`closes_at`), access password and allowed client networks

Tests written before this revision get an empty audience: staff only, until a teacher assigns
them. Hiding a test is the safe side of an upgrade; showing it to every student was the defect.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("oidc_subject", sa.String(600), nullable=True))
        batch.create_unique_constraint("uq_users_oidc_subject", ["oidc_subject"])
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("assigned_to", JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("opens_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("access_password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("allowed_networks", JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        for column in (
            "allowed_networks", "access_password_hash", "closes_at", "opens_at", "assigned_to"
        ):  # fmt: skip
            batch.drop_column(column)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_oidc_subject", type_="unique")
        batch.drop_column("oidc_subject")
        batch.drop_column("must_change_password")
