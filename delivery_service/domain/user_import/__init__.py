"""Bulk import of users from CSV, pure: reading and checking the file (csv_file.py), then
deciding what each row does to the accounts and classes that exist (plan.py)."""

from delivery_service.domain.user_import.csv_file import (
    COLUMNS,
    MAX_CLASS_NAME,
    MAX_DISPLAY_NAME,
    REQUIRED,
    Action,
    ImportFileError,
    Parsed,
    PasswordAction,
    Refusal,
    Row,
    Weakness,
    parse,
)
from delivery_service.domain.user_import.plan import (
    Existing,
    KnownClass,
    Outcome,
    Plan,
    batches,
    plan,
    require_may_import,
)

__all__ = [
    "COLUMNS",
    "MAX_CLASS_NAME",
    "MAX_DISPLAY_NAME",
    "REQUIRED",
    "Action",
    "Existing",
    "ImportFileError",
    "KnownClass",
    "Outcome",
    "Parsed",
    "PasswordAction",
    "Plan",
    "Refusal",
    "Row",
    "Weakness",
    "batches",
    "parse",
    "plan",
    "require_may_import",
]
