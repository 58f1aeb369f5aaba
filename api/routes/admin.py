"""POST /v1/admin/reload: serve what the models' ``current`` pointer names."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import HolderDep
from api.routes.common import API_PREFIX
from api.schemas import ReloadOut

router = APIRouter(prefix=API_PREFIX, tags=["admin"])


@router.post(
    "/admin/reload",
    summary="Reload the model from the `current` pointer",
    description="Loads and verifies (checksums) the published version off the event loop, then "
    "swaps it in; requests already running finish on the model they started with. A damaged or "
    'inconsistent version is refused (`"outcome": "failed"` with the reason) and the old model '
    "keeps serving. The pointer is also watched every watch_seconds.",
    response_model=ReloadOut,
)
async def reload(
    holder: HolderDep,
    force: Annotated[
        bool, Query(description="reload even if `current` is the version already serving")
    ] = False,
) -> ReloadOut:
    result = await holder.reload(force=force)
    return ReloadOut(
        outcome=result.outcome,
        version=result.version,
        previous_version=result.previous_version,
        error=result.error,
    )
