"""Tests (the exam definitions)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.schemas import TestIn, TestOut

router = APIRouter(prefix="/tests", tags=["tests"])


@router.post("", response_model=TestOut, status_code=201)
async def create_test(body: TestIn, user: CurrentUser, runtime: RuntimeDep) -> TestOut:
    return await runtime.catalog.create(user, body)


@router.get("", response_model=list[TestOut])
async def list_tests(user: CurrentUser, runtime: RuntimeDep) -> list[TestOut]:
    return await runtime.catalog.list_tests(user)


@router.get("/{test_id}", response_model=TestOut)
async def get_test(test_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> TestOut:
    return await runtime.catalog.get(user, test_id)
