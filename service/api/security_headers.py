"""Security headers on every response (pure ASGI middleware).

The web page and its static files get a Content-Security-Policy that allows only this origin
('self', plus data: URIs for images, as heatmaps are data: PNGs); API answers get one that allows
nothing, since they are never meant to be rendered; the interactive docs (/docs, /redoc) load
Swagger UI / ReDoc from a CDN with an inline start-up script, so they get no CSP.
"""

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
DOCS_PATHS = ("/docs", "/redoc")
PAGE_PATHS = ("/", "/favicon.ico")
STATIC_PREFIX = "/static/"


def csp_for(path: str) -> str | None:
    if path.startswith(DOCS_PATHS):
        return None
    if path in PAGE_PATHS or path.startswith(STATIC_PREFIX):
        return PAGE_CSP
    return API_CSP


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
