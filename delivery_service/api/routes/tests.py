"""Tests (the exam definitions)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.read_models.tests import TestOut
from delivery_service.schemas.tests import AvailabilityIn, TestIn
from integrity.policy import LockdownPolicy

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


@router.put("/{test_id}/lockdown", response_model=TestOut)
async def set_lockdown(
    test_id: uuid.UUID, body: LockdownPolicy, user: CurrentUser, runtime: RuntimeDep
) -> TestOut:
    """Staff: replace the test's lockdown policy (recorded in the audit trail)."""
    return await runtime.catalog.set_lockdown(user, test_id, body, ledger=runtime.ledger)


@router.put("/{test_id}/availability", response_model=TestOut)
async def set_availability(
    test_id: uuid.UUID, body: AvailabilityIn, user: CurrentUser, runtime: RuntimeDep
) -> TestOut:
    """The test's author (only adding classes they teach) or an admin: replace who may take it
    self-paced and when (`assigned_to`, `opens_at`, `closes_at`, `allowed_networks`); set
    (`password`: a string), clear (`null`) or keep (omitted) its access password. Recorded on
    the test's ledger chain."""
    return await runtime.availability.set(user, test_id, body)
