"""Customer value segments (RFM) of the serving model: the report and each segment's members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api.deps import RecommenderDep
from api.routes.common import API_PREFIX, NEEDS_MODEL
from api.schemas import SegmentCustomersOut, SegmentOut, SegmentsOut

reads = APIRouter(prefix=API_PREFIX, tags=["segments"], responses=NEEDS_MODEL)


@reads.get(
    "/segments",
    summary="Customer value segments",
    description="Per segment: customers, revenue and its share, and how many are due a win-back "
    "(past their usual gap between purchases); and the 80/20 view. Computed by the trainer as "
    "of the end of the training log and stored with the model.",
    response_model=SegmentsOut,
)
async def segments(recommender: RecommenderDep) -> SegmentsOut:
    report = recommender.model.manifest["segments"]
    return SegmentsOut(
        model_version=recommender.version,
        as_of=report["as_of"],
        customers=report["customers"],
        top20_share=report["top20_share"],
        segments=sorted(
            (SegmentOut(name=name, **row) for name, row in report["segments"].items()),
            key=lambda segment: -segment.revenue,  # the most valuable first
        ),
    )


@reads.get(
    "/segments/{segment}/customers",
    summary="Customers of one segment",
    description="The ids of the segment's customers, a page at a time (for CRM exports and "
    "audiences). 404 for a segment the model does not have.",
    response_model=SegmentCustomersOut,
    responses={404: {"description": "unknown segment"}},
)
async def segment_customers(
    segment: Annotated[
        str, Path(max_length=64, openapi_examples={"at risk": {"value": "at-risk"}})
    ],
    recommender: RecommenderDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SegmentCustomersOut:
    if segment not in recommender.segment_names:
        known = ", ".join(sorted(recommender.segment_names))
        raise HTTPException(404, f"unknown segment {segment!r}; the model has: {known}")
    members = recommender.customers_in(segment)
    return SegmentCustomersOut(
        segment=segment,
        model_version=recommender.version,
        total=len(members),
        customers=members[offset : offset + limit].tolist(),
    )
