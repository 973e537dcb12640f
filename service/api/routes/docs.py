"""GET /docs (Swagger UI) and GET /redoc (ReDoc), served with their files from this service.

Hospital networks are often offline, so nothing is loaded from a CDN: the JavaScript, CSS and
favicon come from the fastapi-offline package (Swagger UI 5, which reads the OpenAPI 3.1 that
FastAPI emits, and ReDoc 2), mounted by app.py at ASSETS_PATH. The pages are FastAPI's own
(`get_swagger_ui_html`, `get_redoc_html`) pointed at those files, with Swagger UI's online
validator off (it would send the document's URL to another host) and no Google Fonts for ReDoc.
There is no /docs/oauth2-redirect: the API's security schemes are an API key and a bearer token,
no OAuth2 flow. Each page carries its Content-Security-Policy (security_headers.py says why
each differs from the web page's). Public, like /openapi.json: no API key is needed to read them.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.api.security_headers import REDOC_CSP, swagger_ui_csp

ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
ASSETS_PATH = "/docs/static"
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = swagger_ui_csp(bytes(page.body))
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = REDOC_CSP
    return page
