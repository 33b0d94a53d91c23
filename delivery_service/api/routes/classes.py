"""Classes (source 002 §3.1): teachers or admins manage them; students see their own."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.read_models.classes import ClassOut
from delivery_service.schemas.classes import ClassIn, ClassUpdate, MemberIn

router = APIRouter(prefix="/classes", tags=["classes"])


@router.post("", response_model=ClassOut, status_code=201)
async def create_class(body: ClassIn, user: CurrentUser, runtime: RuntimeDep) -> ClassOut:
    return await runtime.classes.create(user, body)


@router.get("", response_model=list[ClassOut])
async def list_classes(user: CurrentUser, runtime: RuntimeDep) -> list[ClassOut]:
    """Admins: all; teachers: the classes they teach; students: the classes they are in."""
    return await runtime.classes.list_classes(user)


@router.get("/{class_id}", response_model=ClassOut)
async def get_class(class_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> ClassOut:
    return await runtime.classes.get(user, class_id)


@router.put("/{class_id}", response_model=ClassOut)
async def update_class(
    class_id: uuid.UUID, body: ClassUpdate, user: CurrentUser, runtime: RuntimeDep
) -> ClassOut:
    return await runtime.classes.update(user, class_id, body)


@router.delete("/{class_id}", response_model=ClassOut)
async def archive_class(class_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> ClassOut:
    """Archive (classes are never deleted); refused while one of its sessions is in progress."""
    return await runtime.classes.archive(user, class_id)


@router.post("/{class_id}/students", response_model=ClassOut, status_code=201)
async def enroll_student(
    class_id: uuid.UUID, body: MemberIn, user: CurrentUser, runtime: RuntimeDep
) -> ClassOut:
    return await runtime.classes.enroll(user, class_id, body)


@router.delete("/{class_id}/students/{student_id}", response_model=ClassOut)
async def remove_student(
    class_id: uuid.UUID, student_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> ClassOut:
    return await runtime.classes.remove_student(user, class_id, student_id)


@router.post("/{class_id}/teachers", response_model=ClassOut, status_code=201)
async def add_teacher(
    class_id: uuid.UUID, body: MemberIn, user: CurrentUser, runtime: RuntimeDep
) -> ClassOut:
    return await runtime.classes.add_teacher(user, class_id, body)


@router.delete("/{class_id}/teachers/{teacher_id}", response_model=ClassOut)
async def remove_teacher(
    class_id: uuid.UUID, teacher_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> ClassOut:
    return await runtime.classes.remove_teacher(user, class_id, teacher_id)
