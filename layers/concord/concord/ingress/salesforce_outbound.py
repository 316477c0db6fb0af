"""Salesforce Outbound Messages (SOAP 1.1): authenticate, parse, check the org, answer.

Authentication. ``OrganizationId`` is no secret (it is in every record URL and support case), so
anyone who knows it could post 100 notices a request and spend the org's API budget. Outbound
Messages carry no signature and cannot set a header; what Salesforce *can* send is a secret in the
endpoint URL configured on the message, so each one's URL holds a token::

    https://<api-id>.execute-api.<region>.amazonaws.com/<stage>/salesforce/outbound?token=<TOKEN>

:class:`OutboundToken` checks it before the body is read: missing → 401, wrong → 403, both as SOAP
faults with the reason, nothing enqueued. The function holds only the token's SHA-256
(``SALESFORCE_OUTBOUND_TOKEN_SHA256``, the template's ``SalesforceOutboundTokenSha256`` parameter,
NoEcho) and compares digests in constant time, so neither the configuration nor the template's
parameters reveal the token, and no Secrets Manager call is made per cold start. A query string
rather than a path segment because API Gateway routes on the path only (the route stays
``/salesforce/outbound``) and its access-log ``$context.path`` holds no query string.

Set-up:

1. Make a token: ``python3 -c "import secrets; print(secrets.token_urlsafe(32))"`` (URL-safe: it
   goes into a URL unescaped).
2. Deploy with its digest: ``printf %s "$TOKEN" | sha256sum`` → ``--parameter-overrides
   SalesforceOutboundTokenSha256=<hex>``.
3. In Salesforce (Setup → Outbound Messages), set each Concord message's Endpoint URL to the API's
   ``/salesforce/outbound?token=$TOKEN``. Keep the token in a password manager, nowhere else.
4. Rotate: deploy ``<new hex>,<old hex>`` (two digests are accepted), change the endpoint URLs,
   wait out Salesforce's 24-hour retry window, then deploy the new digest alone.

The token is never logged: the reasons of :class:`~concord.ingress.errors.Rejected` name no value,
the webhook functions pass ``log_event=False`` to Powertools (so ``POWERTOOLS_LOGGER_LOG_EVENT``
cannot print the event and its query string), and API Gateway's execution logging with full
request data ("data trace") must stay off, as it is in template.yaml.

Option, mutual TLS: tick "Send Client Certificate" on the outbound message (Salesforce's client
certificate, downloadable under Setup → API, or a certificate of the org's own from Certificate and
Key Management) and put a custom domain with mutual TLS in front of the API (a truststore in S3
holding that certificate's CA; disable the default execute-api endpoint, or the check can be
bypassed). Salesforce's own client certificate proves the sender is Salesforce, not which org:
keep the token (and the org check) with it.

Parsing. The XML is parsed with defusedxml and any DTD is refused outright (``forbid_dtd``), which
refuses external entities (XXE) and entity expansion ("billion laughs") before they are looked at.
The ``SessionId`` element is never read into anything: it is a live Salesforce session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from concord.ingress.errors import Rejected
from concord.notices import ChangeNotice

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime
    from xml.etree.ElementTree import Element

    from concord.notices import ObjectType

__all__ = [
    "MAX_NOTIFICATIONS",
    "OBJECT_TYPES",
    "TOKEN_PARAMETER",
    "OutboundMessage",
    "OutboundToken",
    "ack",
    "fault",
    "parse_outbound_message",
]

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
MAX_NOTIFICATIONS = 100

OBJECT_TYPES: dict[str, ObjectType] = {"Contact": "contact", "Lead": "lead", "Event": "event", "Task": "task"}

_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_VERSION_FIELDS = ("SystemModstamp", "LastModifiedDate")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What one Outbound Message says: its notification ids, the notices, what was skipped."""

    notification_ids: tuple[str, ...]
    notices: tuple[ChangeNotice, ...]
    skipped_types: tuple[str, ...]


TOKEN_PARAMETER = "token"
_MAX_TOKEN = 1024  # longer than any token worth using; the bound only keeps hashing cheap


class OutboundToken:
    """The secret in the Outbound Message endpoint URL, held as SHA-256 digests (see the module docstring).

    Two digests are accepted so that the token can be rotated without refusing messages.
    """

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(digests)
        if not self._digests or any(len(digest) != hashlib.sha256().digest_size for digest in self._digests):
            raise ValueError("OutboundToken needs one or more SHA-256 digests")

    @classmethod
    def from_setting(cls, value: str) -> OutboundToken:
        """From ``SALESFORCE_OUTBOUND_TOKEN_SHA256``: hex digests, comma-separated."""
        return cls(bytes.fromhex(part.strip()) for part in value.split(","))

    def __repr__(self) -> str:
        return f"OutboundToken({len(self._digests)} digest(s))"

    def check(self, query: Mapping[str, Sequence[str]] | None) -> None:
        """Pass when ``query`` (the multi-value query string) holds exactly one token that matches.

        Raises ``Rejected(401)`` when there is no token, ``Rejected(400)`` when there are several
        (which one would API Gateway's single-value map keep?), ``Rejected(403)`` when it is wrong.
        Every digest is compared, in constant time, whatever matched first.
        """
        values = [value for value in (query or {}).get(TOKEN_PARAMETER) or () if value]
        if not values:
            raise Rejected(401, f"missing the outbound message token (?{TOKEN_PARAMETER}= in the endpoint URL)")
        if len(values) > 1:
            raise Rejected(400, f"more than one {TOKEN_PARAMETER} in the endpoint URL")
        if len(values[0]) > _MAX_TOKEN:
            raise Rejected(403, "outbound message token does not match")
        presented = hashlib.sha256(values[0].encode("utf-8", "surrogatepass")).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise Rejected(403, "outbound message token does not match")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(parent: Element, name: str) -> Element | None:
    """The first child whose local name is ``name``, whatever its namespace (enterprise or partner WSDL)."""
    for child in parent:
        if _local(child.tag) == name:
            return child
    return None


def _text(parent: Element, name: str) -> str | None:
    element = _child(parent, name)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _same_org(presented: str, configured: str) -> bool:
    # An 18-character id is the 15-character (case-sensitive) id plus a checksum suffix.
    return len(presented) in (15, 18) and presented[:15] == configured[:15]


def _notifications(body: bytes, org_id: str) -> list[Element]:
    """The ``Notification`` elements of an Outbound Message from ``org_id``."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise Rejected(400, "XML with a DTD or entities is refused") from None
    except (ParseError, ValueError, UnicodeError, LookupError):
        # LookupError: an XML declaration naming an encoding Python does not know.
        raise Rejected(400, "malformed XML") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise Rejected(400, "not a SOAP 1.1 envelope")
    soap_body = root.find(f"{{{SOAP_NS}}}Body")
    notifications = soap_body.find(f"{{{OUTBOUND_NS}}}notifications") if soap_body is not None else None
    if notifications is None:
        raise Rejected(400, "no outbound notifications element in the SOAP body")
    org = _text(notifications, "OrganizationId")
    if org is None or not _SF_ID.match(org):
        raise Rejected(400, "missing or malformed OrganizationId")
    if not _same_org(org, org_id):
        raise Rejected(403, "OrganizationId is not the configured organization")
    elements = [child for child in notifications if _local(child.tag) == "Notification"]
    if not elements:
        raise Rejected(400, "no Notification elements")
    if len(elements) > MAX_NOTIFICATIONS:
        raise Rejected(400, f"more than {MAX_NOTIFICATIONS} notifications")
    return elements


def parse_outbound_message(body: bytes, *, org_id: str, received_at: datetime) -> OutboundMessage:
    """Parse an Outbound Message into one change notice per (distinct) notification.

    Raises ``Rejected(400)`` for anything that is not a well-formed Outbound Message (including any
    DTD), ``Rejected(403)`` when ``OrganizationId`` is not ``org_id``. Notifications for objects
    Concord does not sync are skipped (and reported), not refused: refusing would make Salesforce
    retry the whole message for 24 hours.
    """
    ids: dict[str, None] = {}
    notices: list[ChangeNotice] = []
    skipped: list[str] = []
    for element in _notifications(body, org_id):
        notification_id = _text(element, "Id")
        sobject = _child(element, "sObject")
        if notification_id is None or not _SF_ID.match(notification_id) or sobject is None:
            raise Rejected(400, "a Notification lacks a valid Id or sObject")
        record_id = _text(sobject, "Id")
        if record_id is None or not _SF_ID.match(record_id):
            raise Rejected(400, f"notification {notification_id}: sObject lacks a valid Id")
        if notification_id in ids:
            continue  # the same notification twice in one message: one notice
        ids[notification_id] = None
        sobject_type = (sobject.get(XSI_TYPE) or "").rpartition(":")[2]
        object_type = OBJECT_TYPES.get(sobject_type)
        if object_type is None:
            skipped.append(sobject_type[:64] or "?")
            continue
        version = next((v for v in (_text(sobject, f) for f in _VERSION_FIELDS) if v), None)
        notices.append(
            ChangeNotice(
                source="salesforce",
                object_type=object_type,
                record_id=record_id,
                source_version=version[:512] if version else None,
                provider_event_id=notification_id,
                received_at=received_at,
            )
        )
    return OutboundMessage(notification_ids=tuple(ids), notices=tuple(notices), skipped_types=tuple(skipped))


_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}"><soapenv:Body>{{}}</soapenv:Body></soapenv:Envelope>'
)


def ack() -> str:
    """The answer that stops Salesforce retrying: ``notificationsResponse`` with ``<Ack>true</Ack>``."""
    return _ENVELOPE.format(f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>')


def fault(reason: str, *, client: bool = True) -> str:
    """A SOAP 1.1 fault; ``client`` says whether the sender (``soapenv:Client``) or we are at fault."""
    code = "soapenv:Client" if client else "soapenv:Server"
    return _ENVELOPE.format(
        f"<soapenv:Fault><faultcode>{code}</faultcode><faultstring>{escape(reason)}</faultstring></soapenv:Fault>"
    )
