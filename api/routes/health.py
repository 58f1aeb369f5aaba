"""Liveness, readiness and Prometheus metrics (unversioned, at the root)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import HolderDep, MetricsDep, StoreDep
from api.schemas import Health
from engine.profiles import StoreUnavailableError

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    response_model=Health,
)
async def healthz(holder: HolderDep) -> Health:
    return Health(status="ok", model_version=holder.version)


@router.get(
    "/readyz",
    summary="Readiness: a model is loaded and the store is reachable",
    description="503 until both hold, so a load balancer sends no traffic to an instance that "
    "has no model or cannot reach Redis. A refused reload does not make an instance unready: "
    "it keeps serving its old model, and the refusal is reported in model_error.",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready"}},
)
async def readyz(holder: HolderDep, store: StoreDep, metrics: MetricsDep) -> Response:
    try:
        reachable = await store.ping()
    except StoreUnavailableError:
        reachable = False
    if not reachable:
        metrics.store_errors.labels("ping").inc()
    ready = reachable and holder.current is not None
    body = Health(
        status="ok" if ready else "unavailable",
        model_version=holder.version,
        store="ok" if reachable else "unreachable",
        model_error=holder.last_error,
    )
    return JSONResponse(
        body.model_dump(),
        status_code=HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics_endpoint(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)
