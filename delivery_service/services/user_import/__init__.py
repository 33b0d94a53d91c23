"""Bulk import of users from CSV (POST /users/import, `examserver import-users`): `UserImports`
reads (facts), lets the domain decide (domain/user_import/), hashes and writes in batches."""

from delivery_service.services.user_import.importer import UserImports, generate_password
from delivery_service.services.user_import.report import report

__all__ = ["UserImports", "generate_password", "report"]
