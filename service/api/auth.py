"""API keys on /v1/*: `X-API-Key: KEY` or `Authorization: Bearer KEY`.

With API_KEYS empty, authentication is off (and the server binds loopback only). Keys are
compared with hmac.compare_digest against every configured key (no early exit), and never logged
or echoed. When both headers are sent, X-API-Key is the one checked.
"""

import hmac
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from service.api.deps import SettingsDep
from service.api.problems import Problem

API_KEY_HEADER = "X-API-Key"
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKey", description="One of the keys in API_KEYS."
)
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="Bearer", description="`Authorization: Bearer <key>`, a key from API_KEYS."
)


def key_matches(presented: str, keys: list[SecretStr]) -> bool:
    candidate = presented.encode("utf-8")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode("utf-8"))
    return matched


async def require_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> None:
    if not settings.auth_enabled:
        return
    presented = api_key if api_key is not None else (bearer.credentials if bearer is not None else None)
    if not presented:
        raise Problem(
            401,
            f"send an API key as `{API_KEY_HEADER}: <key>` or `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="cxr"'},
        )
    if not key_matches(presented, settings.api_keys):
        raise Problem(
            401,
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="cxr", error="invalid_token"'},
        )
