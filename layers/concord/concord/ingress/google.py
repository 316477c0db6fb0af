"""Google: Gmail Pub/Sub pushes (OIDC-authenticated) and Calendar channel notifications.

Gmail: the ``Authorization: Bearer`` token is an OIDC JWT Google signs for the push subscription's
service account. It is verified against Google's keys (the JWKS URL is a setting, so the sandbox's
keys work locally): signature (RS256 only), ``exp``/``iat``, ``aud``, ``iss`` and ``email`` (+
``email_verified``). PyJWT and cryptography are imported only when a token is checked: the Calendar
route, and the cold start of the rest, do not pay for them.

Calendar: ``X-Goog-Channel-ID`` must name a known channel, ``X-Goog-Channel-Token`` match its
secret (digests compared in constant time) and ``X-Goog-Resource-ID`` be the resource the channel was
made on (the ``resourceId`` its watch answered, stored with it): a channel's token alone would let
whoever learned it announce changes of another resource. The body is empty and never parsed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from concord.adapters.subscriptions import channel_key, gmail_key
from concord.ingress.errors import Rejected
from concord.notices import ChangeNotice
from concord.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from concord.adapters.subscriptions import Channel

__all__ = [
    "GOOGLE_ISSUERS",
    "CalendarPing",
    "GmailPush",
    "JwksKeys",
    "PushTokenVerifier",
    "calendar_notice",
    "parse_calendar_headers",
    "parse_gmail_push",
]

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_MAX_HISTORY_ID = 2**64 - 1
_EMAIL = re.compile(r"^[^@\s]{1,256}@[^@\s]{1,256}$")
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,256}$")
_RESOURCE_STATES = ("sync", "exists", "not_exists")
_MAX_RESOURCE_ID = 256  # Google's resource ids are ~27 characters; the bound only keeps junk out


# ---- Gmail: OIDC token ------------------------------------------------------------------------


class KeyResolver(Protocol):
    """Finds the public key that verifies a token (by its ``kid``)."""

    def __call__(self, token: str, /) -> Any: ...


class JwksKeys:
    """Keys from a JWKS URL (PyJWT's ``PyJWKClient``), cached for an hour, fetched on first use.

    ``ca_bundle`` verifies the JWKS server's certificate (the local sandbox's throwaway CA).
    """

    def __init__(self, url: str, *, ca_bundle: str | None = None, timeout_s: int = 5) -> None:
        self.url = url
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, token: str, /) -> Any:
        import jwt

        with self._lock:
            if self._client is None:
                self._client = jwt.PyJWKClient(
                    self.url, cache_keys=True, lifespan=3600, timeout=self._timeout_s, ssl_context=self._ssl_context()
                )
        try:
            return self._client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise self._unreachable(exc) from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.InvalidTokenError):  # an empty or broken key set too
            raise Rejected(401, "token is not signed by a known Google key") from None

    def _ssl_context(self) -> Any:
        """The TLS context for the certs URL; ``None`` (the system CAs) when no bundle is configured.

        A bundle that cannot be read is a 503 naming it, and the client is not cached, so the next
        request tries again once the file is back.
        """
        if not self._ca_bundle:
            return None
        import ssl

        try:
            return ssl.create_default_context(cafile=self._ca_bundle)
        except OSError as exc:  # missing, unreadable, or not PEM (ssl.SSLError is an OSError)
            logger.error(
                "the CA bundle for Google's certs URL cannot be read",
                extra={
                    "ca_bundle": self._ca_bundle,
                    "error": type(exc).__name__,
                    "fix": "point CA_BUNDLE at a readable PEM file (locally: the sandbox CA that `make run` "
                    "writes; it is removed when the run stops), or unset CA_BUNDLE to use the system CAs",
                },
            )
            raise Rejected(503, "the CA bundle (CA_BUNDLE) for Google's certs URL cannot be read") from None

    def _unreachable(self, exc: Exception) -> Rejected:
        import ssl

        cause = exc.__cause__
        reason = getattr(cause, "reason", cause)
        if isinstance(reason, ssl.SSLCertVerificationError):
            logger.error(
                "the certs URL's TLS certificate is not trusted",
                extra={
                    "jwks_url": self.url,
                    "ca_bundle": self._ca_bundle,
                    "error": reason.verify_message,
                    "fix": "set CA_BUNDLE to the CA that signed the certs URL's certificate (locally: the "
                    "sandbox CA that `make run` writes); in AWS, leave CA_BUNDLE unset",
                },
            )
            return Rejected(503, "the certs URL's TLS certificate cannot be verified with the configured CA bundle")
        logger.error(
            "Google's certs URL cannot be reached",
            extra={
                "jwks_url": self.url,
                "error": type(reason).__name__,
                "fix": "check GOOGLE_JWKS_URL and that the function can reach it (network, DNS; locally: is "
                "the Google sandbox running and reachable from where the function runs?)",
            },
        )
        return Rejected(503, "Google's signing keys cannot be fetched from the certs URL (GOOGLE_JWKS_URL) now")


class PushTokenVerifier:
    """Verifies the OIDC token on a Pub/Sub push. Raises ``Rejected`` (401/403, or 503 if keys are unreachable)."""

    def __init__(self, *, audience: str, service_account: str, keys: KeyResolver, leeway_s: int = 60) -> None:
        self.audience = audience
        self.service_account = service_account.lower()
        self._keys = keys
        self._leeway_s = leeway_s

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, once signature, expiry, audience, issuer and email check out."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Rejected(401, "missing bearer token")
        if len(token) > 8192 or token.count(".") != 2:
            raise Rejected(401, "malformed token")
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Rejected(401, "malformed token") from None
        if header.get("alg") != "RS256":
            raise Rejected(401, "token is not signed with RS256")
        key = self._keys(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=GOOGLE_ISSUERS,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "email"]},
            )
        except jwt.ExpiredSignatureError:
            raise Rejected(401, "token expired") from None
        except jwt.InvalidAudienceError:
            raise Rejected(401, "token audience is not this endpoint's") from None
        except jwt.InvalidIssuerError:
            raise Rejected(401, "token not issued by Google") from None
        except jwt.InvalidSignatureError:
            raise Rejected(401, "token signature does not verify") from None
        except jwt.InvalidTokenError:
            raise Rejected(401, "invalid token") from None
        email = claims.get("email")
        if not isinstance(email, str) or email.lower() != self.service_account:
            raise Rejected(403, "token is not the push subscription's service account")
        if claims.get("email_verified") is not True:
            raise Rejected(403, "token email is not verified")
        return claims


# ---- Gmail: the push body ---------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: str = Field(min_length=1, max_length=8192)
    messageId: str | None = Field(default=None, min_length=1, max_length=256)
    message_id: str | None = Field(default=None, min_length=1, max_length=256)


class _Push(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: _Message
    subscription: str | None = Field(default=None, max_length=512)


@dataclass(frozen=True, slots=True)
class GmailPush:
    """The mailbox a push is about, its new history id, and the Pub/Sub message id."""

    email: str
    history_id: int
    message_id: str


def _b64decode(data: str) -> bytes:
    cleaned = data.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def _history_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        return None
    return number if 0 < number <= _MAX_HISTORY_ID else None


def parse_gmail_push(body: bytes) -> GmailPush:
    """Decode a Pub/Sub push envelope and its ``message.data``. Raises ``Rejected(400)``."""
    try:
        push = _Push.model_validate_json(body)
    except ValidationError:
        raise Rejected(400, "not a Pub/Sub push envelope") from None
    message_id = push.message.messageId or push.message.message_id
    if message_id is None:
        raise Rejected(400, "Pub/Sub message has no messageId")
    try:
        data = json.loads(_b64decode(push.message.data))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise Rejected(400, "message.data is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, "message.data is not a JSON object")
    email = data.get("emailAddress")
    if not isinstance(email, str) or not _EMAIL.match(email):
        raise Rejected(400, "message.data lacks a valid emailAddress")
    history_id = _history_id(data.get("historyId"))
    if history_id is None:
        raise Rejected(400, "message.data lacks a valid historyId")
    return GmailPush(email=email.lower(), history_id=history_id, message_id=message_id)


def gmail_notice(push: GmailPush, watch: Channel | None, *, received_at: datetime) -> ChangeNotice | None:
    """The catch-up notice for a push (Gmail says only "the mailbox changed up to history id N")."""
    if watch is None:
        return None
    return ChangeNotice(
        source="google",
        connection_id=watch.connection_id,
        object_type="email",
        kind="catch_up",
        source_version=str(push.history_id),
        provider_event_id=push.message_id,
        received_at=received_at,
    )


def gmail_watch_key(push: GmailPush) -> str:
    return gmail_key(push.email)


# ---- Calendar -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarPing:
    """A channel notification's headers; ``token`` is secret: never log it."""

    channel_id: str
    token: str | None
    resource_state: str
    message_number: str | None
    resource_id: str

    def __repr__(self) -> str:
        return f"CalendarPing(channel_id={self.channel_id!r}, resource_state={self.resource_state!r})"


def parse_calendar_headers(headers: Mapping[str, str]) -> CalendarPing:
    """Read the ``X-Goog-*`` headers (``headers`` must be case-insensitive). Raises ``Rejected(400)``."""
    channel_id = headers.get("X-Goog-Channel-ID")
    if not channel_id or not _CHANNEL_ID.match(channel_id):
        raise Rejected(400, "missing or malformed X-Goog-Channel-ID")
    state = headers.get("X-Goog-Resource-State")
    if state not in _RESOURCE_STATES:
        raise Rejected(400, "missing or unknown X-Goog-Resource-State")
    number = headers.get("X-Goog-Message-Number")
    if number is not None and not (number.isascii() and number.isdigit() and len(number) <= 20):
        raise Rejected(400, "malformed X-Goog-Message-Number")
    resource_id = headers.get("X-Goog-Resource-ID")
    if not resource_id or len(resource_id) > _MAX_RESOURCE_ID:
        raise Rejected(400, "missing or malformed X-Goog-Resource-ID")
    return CalendarPing(
        channel_id=channel_id,
        token=headers.get("X-Goog-Channel-Token"),
        resource_state=state,
        message_number=number,
        resource_id=resource_id,
    )


def calendar_notice(
    ping: CalendarPing, lookup: Callable[[str], Channel | None], *, received_at: datetime
) -> ChangeNotice:
    """Authenticate a (non-``sync``) ping against its channel and make the catch-up notice.

    Raises ``Rejected(403)`` for an unknown channel, a token that is not the channel's, or a
    resource that is not the one the channel watches.
    """
    channel = lookup(channel_key(ping.channel_id))
    if channel is None:
        raise Rejected(403, "unknown channel")
    if not channel.secret_matches(ping.token):
        raise Rejected(403, "channel token does not match")
    if channel.resource_id is None:
        raise Rejected(403, "the channel has no resource id on record")
    if not channel.resource_matches(ping.resource_id):
        raise Rejected(403, "X-Goog-Resource-ID is not the channel's resource")
    return ChangeNotice(
        source="google",
        connection_id=channel.connection_id,
        object_type="event",
        kind="catch_up",
        provider_event_id=f"{ping.channel_id}:{ping.message_number or ping.resource_state}",
        received_at=received_at,
    )
