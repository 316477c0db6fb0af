"""What the Salesforce sandbox pushes: Outbound Messages (SOAP) and change events (as Event Relay
delivers them to EventBridge).

Both are built at commit time from the committed record, as Salesforce does: a message retried
later carries the values it was built with, and a record deleted before delivery still goes out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from defusedxml import ElementTree

from local.sandboxes.salesforce.schema import SObjectType, now, parse_datetime

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import httpx

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
EMPTY_ID = "000000000000000AAA"  # what GAP_OVERFLOW events carry as their only record id
MAX_NOTIFICATIONS = 100


@dataclass(frozen=True)
class Change:
    """One committed change to one record, the unit both kinds of push are built from."""

    sobject: SObjectType
    record_id: str
    change_type: str  # CREATE, UPDATE, DELETE
    record: dict[str, Any]  # the record as committed
    changed: tuple[str, ...] = ()  # field names whose value changed (UPDATE)
    origin: str = ""


@dataclass(frozen=True)
class OutboundMessage:
    """An Outbound Message action: which object, where to, which fields, and whether to send a session.

    Salesforce sends one when a record of ``sobject`` is created or updated (a workflow rule or flow
    firing on every save); ``Id`` always goes out.
    """

    sobject: str
    endpoint_url: str
    fields: tuple[str, ...] = ("Id",)
    include_session_id: bool = False
    action_id: str = "04k5g000000SEEDAAA"
    on: frozenset[str] = field(default_factory=lambda: frozenset({"CREATE", "UPDATE"}))


# ------------------------------------------------------------------------------ outbound messages


def _soap_value(spec_type: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if spec_type == "datetime" and isinstance(value, str):
        moment = parse_datetime(value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return str(value)


def outbound_envelope(
    *,
    org_id: str,
    action_id: str,
    session_id: str | None,
    enterprise_url: str,
    partner_url: str,
    notifications: Sequence[tuple[str, SObjectType, dict[str, Any]]],
) -> bytes:
    """The SOAP 1.1 envelope of one Outbound Message: 1 to 100 ``(notification id, type, fields)``.

    Null fields are left out, as Salesforce leaves them out; a deleted record's fields still go out
    with the values committed when the message was queued.
    """
    assert 1 <= len(notifications) <= MAX_NOTIFICATIONS
    session = f"<SessionId>{escape(session_id)}</SessionId>" if session_id else '<SessionId xsi:nil="true"/>'
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "<soapenv:Body>",
        f'<notifications xmlns="{OUTBOUND_NS}">',
        f"<OrganizationId>{escape(org_id)}</OrganizationId>",
        f"<ActionId>{escape(action_id)}</ActionId>",
        session,
        f"<EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>",
        f"<PartnerUrl>{escape(partner_url)}</PartnerUrl>",
    ]
    for notification_id, sobject, values in notifications:
        parts.append(f"<Notification><Id>{escape(notification_id)}</Id>")
        parts.append(f'<sObject xsi:type={quoteattr("sf:" + sobject.name)} xmlns:sf="{SOBJECT_NS}">')
        for name, value in values.items():
            if value is None:
                continue
            spec = sobject.field(name)
            parts.append(f"<sf:{name}>{escape(_soap_value(spec.type if spec else 'string', value))}</sf:{name}>")
        parts.append("</sObject></Notification>")
    parts += ["</notifications>", "</soapenv:Body>", "</soapenv:Envelope>"]
    return "\n".join(parts).encode("utf-8")


def acknowledged(response: httpx.Response) -> bool:
    """Salesforce counts a delivery only when the answer is 200 with ``<Ack>true</Ack>``."""
    if response.status_code != 200:
        return False
    try:
        root = ElementTree.fromstring(response.content)
    except ElementTree.ParseError:
        return False
    ack = root.find(f".//{{{OUTBOUND_NS}}}Ack")
    if ack is None:
        ack = root.find(".//Ack")  # receivers that answer without the namespace are accepted too
    return ack is not None and (ack.text or "").strip().lower() == "true"


# ----------------------------------------------------------------------------------- change events

# Not part of change events: the id travels in recordIds, and these are bookkeeping.
_NOT_IN_EVENTS = frozenset({"Id", "IsDeleted", "SystemModstamp"})


def _event_value(spec_type: str, value: Any) -> Any:
    if value is None:
        return None
    if spec_type == "datetime" and isinstance(value, str):
        return int(parse_datetime(value).timestamp() * 1000)  # change events carry epoch milliseconds
    return value


def _part_name(compound: str, part: str) -> str:
    """``MailingStreet`` inside ``MailingAddress`` is ``Street``; ``Name``'s parts keep their names."""
    prefix = compound.removesuffix("Address") if compound.endswith("Address") else ""
    return part.removeprefix(prefix) if prefix and part.startswith(prefix) else part


def change_payload(change: Change, header: dict[str, Any]) -> dict[str, Any]:
    """The change event body: the header, then every field of the object (unchanged ones null)."""
    sobject = change.sobject
    in_compound = {part: name for name, parts in sobject.compounds.items() for part in parts}
    show_all = change.change_type == "CREATE"
    body: dict[str, Any] = {"ChangeEventHeader": header}
    compounds: dict[str, dict[str, Any]] = {}
    for name, spec in sobject.fields.items():
        if name in _NOT_IN_EVENTS or (name == "Name" and "Name" in sobject.compounds):
            continue
        shown = show_all or name in change.changed
        value = _event_value(spec.type, change.record.get(name)) if shown and change.change_type != "DELETE" else None
        if name in in_compound:
            compound = in_compound[name]
            part = compounds.setdefault(compound, {})
            part[_part_name(compound, name)] = value
        else:
            body[name] = value
    for compound, parts in compounds.items():
        body[compound] = parts if any(v is not None for v in parts.values()) else None
    return body


def _labelled(change: Change) -> list[tuple[str, str]]:
    """(field name, its label in change events) for each changed field that events show."""
    in_compound = {part: name for name, parts in change.sobject.compounds.items() for part in parts}
    labelled = []
    for name in change.changed:
        if name in _NOT_IN_EVENTS or (name == "Name" and "Name" in change.sobject.compounds):
            continue
        compound = in_compound.get(name)
        labelled.append((name, f"{compound}.{_part_name(compound, name)}" if compound else name))
    return labelled


def changed_field_names(change: Change) -> list[str]:
    """``changedFields`` as names, compound parts written ``Name.LastName`` / ``MailingAddress.City``."""
    return [label for _, label in _labelled(change)]


def nulled_field_names(change: Change) -> list[str]:
    """``nulledFields``: the changed fields whose new value is null."""
    return [label for name, label in _labelled(change) if change.record.get(name) is None]


def eventbridge_event(
    payload: dict[str, Any], *, entity: str, org_id: str, channel_id: str, account: str, region: str
) -> dict[str, Any]:
    """The whole EventBridge event Event Relay puts on the partner event bus."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": f"{entity}ChangeEvent",
        "source": f"aws.partner/salesforce.com/{org_id}/{channel_id}",
        "account": account,
        "time": now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": {"payload": payload, "schemaId": f"{entity}ChangeEvent-sandbox"},
    }


def header(
    *,
    entity: str,
    record_ids: Iterable[str],
    change_type: str,
    origin: str,
    transaction_key: str,
    sequence: int,
    commit_ms: int,
    commit_number: int,
    commit_user: str,
    changed: list[str],
    nulled: list[str],
) -> dict[str, Any]:
    return {
        "entityName": entity,
        "recordIds": list(record_ids),
        "changeType": change_type,
        "changeOrigin": origin,
        "transactionKey": transaction_key,
        "sequenceNumber": sequence,
        "commitTimestamp": commit_ms,
        "commitNumber": commit_number,
        "commitUser": commit_user,
        "changedFields": changed,
        "diffFields": [],
        "nulledFields": nulled,
    }
