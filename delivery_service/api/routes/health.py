"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from delivery_service.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database and Redis answer and the worker is not draining; 503 otherwise."""
    checks = await runtime.readiness()
    ready = checks["database"] and checks["redis"] and not checks["draining"]
    return JSONResponse(
        {
            "status": "ready" if ready else "unavailable",
            "checks": checks,
            "worker": runtime.worker_id,
        },
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text format: sockets, messages, answer latency, fan-out, expiry lag, errors."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
