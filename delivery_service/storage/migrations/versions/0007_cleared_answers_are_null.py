"""cleared answers are SQL NULL: item_states.response held the JSON value null for a cleared
answer, which SQL counted as answered while Python did not

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE item_states SET response = NULL WHERE response = 'null'::jsonb")
    else:
        op.execute("UPDATE item_states SET response = NULL WHERE response = 'null'")


def downgrade() -> None:
    """Nothing to undo: SQL NULL reads back as None either way."""
