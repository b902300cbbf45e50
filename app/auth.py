"""API_TOKEN: when set, every request but the public paths carries `Authorization: Bearer <token>`.

Pure ASGI middleware; the refusal takes the error shape of the path's dialect. The token is compared in
constant time, so the answer's timing does not reveal how much of a guess was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_handlers import Dialects
from app.http import settings_of

MISSING = "This API needs a token: send the header Authorization: Bearer <API_TOKEN>."
WRONG = "The bearer token is not this API's token."


def bearer_credentials(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerToken:
    def __init__(self, app: ASGIApp, dialects: Dialects, public: Callable[[str], bool]) -> None:
        self.app = app
        self.dialects = dialects
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = settings_of(scope).api_token if scope["type"] == "http" else None
        if token is None or self.public(scope["path"]):
            await self.app(scope, receive, send)
            return
        credentials = bearer_credentials(scope)
        if credentials is not None and hmac.compare_digest(credentials, token.get_secret_value().encode()):
            await self.app(scope, receive, send)
            return
        # RFC 6750: a request without credentials gets the bare challenge; a wrong token, the error code too.
        challenge = "Bearer" if credentials is None else 'Bearer error="invalid_token"'
        detail = MISSING if credentials is None else WRONG
        await self.dialects.refuse(scope, send, 401, detail, {"WWW-Authenticate": challenge})
