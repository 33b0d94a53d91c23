"""The import's report, from what the domain decided (read_models/user_import.py)."""

from __future__ import annotations

import uuid

from delivery_service.domain.user_import import Plan
from delivery_service.read_models.user_import import (
    ImportReport,
    ImportRowOut,
    ImportSummaryOut,
    IssuedPasswordOut,
)


def report(
    decided: Plan,
    *,
    dry_run: bool,
    import_id: uuid.UUID | None = None,
    batches: int = 0,
    passwords: list[IssuedPasswordOut] | None = None,
) -> ImportReport:
    rows = [
        ImportRowOut(
            line=o.line,
            username=o.username,
            display_name=o.display_name,
            role=o.role,
            action=o.action,
            changes=list(o.changes),
            classes_added=list(o.classes_added),
            password=o.password,
            code=o.code,
            reason=o.reason,
        )
        for o in decided.outcomes
    ]
    return ImportReport(
        import_id=import_id,
        dry_run=dry_run,
        ok=decided.ok,
        summary=ImportSummaryOut(
            rows=len(rows),
            create=decided.count("create"),
            update=decided.count("update"),
            unchanged=decided.count("unchanged"),
            refused=decided.count("refused"),
            classes_created=len(decided.new_classes),
            batches=batches,
        ),
        classes_created=decided.new_classes,
        rows=rows,
        passwords=passwords or [],
    )
