"""``GET /``: the browser form (static files under ``/static``); it posts to ``POST /predict``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def form() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
