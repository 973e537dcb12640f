"""Security headers on every response (pure ASGI middleware).

The web page and its static files get a Content-Security-Policy that allows only this origin
('self', plus data: URIs for images, as heatmaps are data: PNGs); API answers get one that allows
nothing, since they are never meant to be rendered. The interactive docs and their files are
served from here too (routes/docs.py, no CDN), so the docs routes set policies of their own that
also allow only this origin: /docs allows the one inline script that starts Swagger UI by its
sha256 hash, taken from the page it sends (never 'unsafe-inline' scripts); /redoc has no inline
script, but ReDoc injects its styles at run time and searches in a blob: worker, so it allows
inline styles and blob: workers. ReDoc's Redocly logo, the one file it asks another host for, is
refused by img-src (it is then not shown).
"""

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SWAGGER_UI_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src {script_src}; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
REDOC_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
PAGE_PATHS = ("/", "/favicon.ico")
STATIC_PREFIXES = ("/static/", "/docs/static/")
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def csp_for(path: str) -> str | None:
    """The policy of `path`; None for the docs pages, whose routes set theirs."""
    if path in DOCS_PATHS:
        return None
    if path in PAGE_PATHS or path.startswith(STATIC_PREFIXES):
        return PAGE_CSP
    return API_CSP


def swagger_ui_csp(html: bytes) -> str:
    """SWAGGER_UI_CSP allowing each inline <script> of `html` by the sha256 of its exact text."""
    digests = [hashlib.sha256(script).digest() for script in INLINE_SCRIPT.findall(html)]
    hashes = [f"'sha256-{base64.b64encode(digest).decode('ascii')}'" for digest in digests]
    return SWAGGER_UI_CSP.format(script_src=" ".join(["'self'", *hashes]))


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = csp_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                if csp is not None:
                    headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)
