"""Bulk import of users from CSV (teachers and admins): a dry run, then the real thing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from delivery_service.api.deps import CurrentUser, NoStore, RuntimeDep
from delivery_service.api.errors import ApiError
from delivery_service.domain.errors import Unprocessable
from delivery_service.read_models.user_import import ImportReport

router = APIRouter(prefix="/users", tags=["users"])

CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")

_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    },
}


# The body may be far larger than other request bodies: app.py gives this route its own limit.
@router.post(
    "/import",
    response_model=ImportReport,
    dependencies=[NoStore],
    openapi_extra={"requestBody": _BODY},
    responses={
        415: {"description": "neither a CSV body nor a multipart upload (`unsupported_media_type`)"}
    },
)
async def import_users(
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    dry_run: Annotated[bool, Query(description="check and report; write nothing")] = False,
    reissue_passwords: Annotated[
        bool,
        Query(
            description="give a new generated password to users in the file who have not "
            "chosen their own yet (an earlier import's passwords were lost)"
        ),
    ] = False,
    must_change_password: Annotated[
        bool,
        Query(
            description="the file's own passwords are temporary: each user chooses their own "
            "at first sign-in (false: theirs to keep). Generated ones always are."
        ),
    ] = True,
) -> ImportReport:
    """Body: the CSV (`text/csv`), or a multipart form with the CSV as its `file` field.
    Columns `username,display_name,role,class,password` (docs/api.md, "Bulk import").

    With `dry_run`: 200 and what each row would do, refused rows included (`ok: false`).
    Without: every row is checked first; if any is refused nothing is written and the answer
    is 422 `import_refused` with the same report in `details`; else the report, with the
    generated passwords shown this once."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=1)
        except HTTPException as exc:  # Starlette's 400 for a form it cannot parse
            raise Unprocessable(
                "invalid_upload", f"the upload cannot be read: {exc.detail}"
            ) from exc
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Unprocessable("csv_missing", "send the CSV as the form's `file` field")
            data = await upload.read()
        finally:
            await form.close()
    elif kind in CSV_TYPES or not kind:
        data = await request.body()
    else:
        raise ApiError(
            415, "unsupported_media_type", "send text/csv or a multipart/form-data upload"
        )
    return await runtime.user_imports.run(
        user,
        data,
        dry_run=dry_run,
        reissue_passwords=reissue_passwords,
        given_temporary=must_change_password,
    )
