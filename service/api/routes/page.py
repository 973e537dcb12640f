"""GET /: the web page (service/api/static/index.html), 404 problem+json until it is installed."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.api.problems import Problem

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = STATIC_DIR / "index.html"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    if not PAGE.is_file():
        raise Problem(404, "the web page is not installed (service/api/static/index.html)")
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
