"""The item bank and QTI content packages (staff only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.domain.errors import Unprocessable
from delivery_service.read_models.tests import BankItemOut, QtiImportOut
from delivery_service.schemas.actions import ReasonIn
from delivery_service.schemas.tests import ReasonedItemIn
from test_assembly.model import ItemDefinition
from test_assembly.qti.safe import MAX_TOTAL_BYTES

router = APIRouter(tags=["item bank"])


@router.post("/items", response_model=BankItemOut, status_code=201)
async def create_item(body: ItemDefinition, user: CurrentUser, runtime: RuntimeDep) -> BankItemOut:
    """Add an item to the bank (version 1). 409 `item_exists` if the identifier is taken."""
    return await runtime.bank.create(user, body)


@router.get("/items", response_model=list[BankItemOut])
async def list_items(
    user: CurrentUser,
    runtime: RuntimeDep,
    tag: Annotated[list[str] | None, Query(description="items carrying every tag given")] = None,
    state: Annotated[str | None, Query(pattern="^(active|retired|all)$")] = "active",
    type: Annotated[str | None, Query()] = None,
) -> list[BankItemOut]:
    return await runtime.bank.list_items(
        user, tags=tag, state=None if state == "all" else state, type_=type
    )


@router.get("/items/{identifier}", response_model=BankItemOut)
async def get_item(
    identifier: str,
    user: CurrentUser,
    runtime: RuntimeDep,
    version: Annotated[int | None, Query(ge=1, description="an older version")] = None,
) -> BankItemOut:
    return await runtime.bank.get(user, identifier, version=version)


@router.put("/items/{identifier}", response_model=BankItemOut)
async def update_item(
    identifier: str, body: ReasonedItemIn, user: CurrentUser, runtime: RuntimeDep
) -> BankItemOut:
    """A new version; attempts that already delivered the item keep the version they had."""
    return await runtime.bank.update(user, identifier, body.item, reason=body.reason)


@router.post("/items/{identifier}/retire", response_model=BankItemOut)
async def retire_item(
    identifier: str, body: ReasonIn, user: CurrentUser, runtime: RuntimeDep
) -> BankItemOut:
    """No new form will draw it; attempts that have it keep it. Saving it again revives it."""
    return await runtime.bank.retire(user, identifier, reason=body.reason)


# A package may be far larger than other request bodies: app.py gives this route its own limit.
@router.post("/qti/import", response_model=QtiImportOut, status_code=201)
async def import_qti(
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    all_or_nothing: Annotated[bool, Query(description="refuse the package on any problem")] = False,
) -> QtiImportOut:
    """Body: the package's zip bytes (Content-Type application/zip)."""
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_TOTAL_BYTES:
            raise Unprocessable("package_too_large", "the package is larger than the limit")
    return await runtime.catalog.import_qti(user, bytes(data), all_or_nothing=all_or_nothing)


@router.get(
    "/tests/{test_id}/qti",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
async def export_qti(test_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """The test as a QTI 3.0 content package."""
    data = await runtime.catalog.export_qti(user, test_id)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="test-{test_id}.zip"'},
    )
