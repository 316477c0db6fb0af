"""Salesforce Outbound Messages (SOAP 1.1): parse, check the org, answer.

The XML is parsed with defusedxml and any DTD is refused outright (``forbid_dtd``), which refuses
external entities (XXE) and entity expansion ("billion laughs") before they are looked at. The
``SessionId`` element is never read into anything: it is a live Salesforce session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from concord.ingress.errors import Rejected
from concord.notices import ChangeNotice

if TYPE_CHECKING:
    from datetime import datetime
    from xml.etree.ElementTree import Element

    from concord.notices import ObjectType

__all__ = [
    "MAX_NOTIFICATIONS",
    "OBJECT_TYPES",
    "OutboundMessage",
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
