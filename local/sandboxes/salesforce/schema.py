"""The sObjects the Salesforce sandbox knows: their key prefixes, fields, types and limits, and ids.

Only the fields Concord reads or writes (PROTOCOLS.md) plus the system fields every record has. A
field not listed here is refused the way Salesforce refuses it (``INVALID_FIELD``), which is what
catches a client that misspells a field before production does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

# Salesforce's 18-character ids add three characters that encode the upper-case letters of the
# 15-character id, five characters at a time, so case-insensitive systems can compare them.
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def id18(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce id."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _CHECKSUM_ALPHABET[bits]
    return id15 + suffix


def make_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, a pod part, then ``number`` in base 62."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return id18(prefix + "5g0" + digits.rjust(9, "0"))


def looks_like_id(value: str) -> bool:
    return len(value) in (15, 18) and value.isalnum()


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"  # string, email, phone, textarea, id, reference, boolean, int, datetime, date, picklist
    length: int = 0  # 0: no length limit enforced
    createable: bool = True
    updateable: bool = True
    required: bool = False
    references: tuple[str, ...] = ()  # for reference fields: the sObjects it may point to


@dataclass(frozen=True)
class SObjectType:
    name: str
    prefix: str
    label: str
    fields: dict[str, Field] = field(default_factory=dict)
    # compound fields as CDC nests them: {"Name": ("Salutation", "FirstName", "LastName")}
    compounds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a derived, read-only object over another's rows (TaskWhoRelation: the TaskRelations that are not IsWhat)
    view_of: str = ""

    def field(self, name: str) -> Field | None:
        """Field names are case-insensitive in Salesforce; this returns the canonical one."""
        return self._lower().get(name.lower())

    def _lower(self) -> dict[str, Field]:
        return {f.lower(): spec for f, spec in self.fields.items()}


def _system_fields() -> list[Field]:
    return [
        Field("Id", "id", createable=False, updateable=False),
        Field("IsDeleted", "boolean", createable=False, updateable=False),
        Field("CreatedDate", "datetime", createable=False, updateable=False),
        Field("CreatedById", "reference", createable=False, updateable=False, references=("User",)),
        Field("LastModifiedDate", "datetime", createable=False, updateable=False),
        Field("LastModifiedById", "reference", createable=False, updateable=False, references=("User",)),
        Field("SystemModstamp", "datetime", createable=False, updateable=False),
    ]


def _owned() -> list[Field]:
    return [Field("OwnerId", "reference", references=("User",))]


def _address(prefix: str) -> list[Field]:
    return [
        Field(f"{prefix}Street", "textarea", 255),
        Field(f"{prefix}City", "string", 40),
        Field(f"{prefix}State", "string", 80),
        Field(f"{prefix}PostalCode", "string", 20),
        Field(f"{prefix}Country", "string", 80),
    ]


def _address_compound(name: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    return name, tuple(f"{prefix}{part}" for part in ("Street", "City", "State", "PostalCode", "Country"))


def _person() -> list[Field]:
    return [
        Field("Salutation", "picklist", 40),
        Field("FirstName", "string", 40),
        Field("LastName", "string", 80, required=True),
        Field("Name", "string", 121, createable=False, updateable=False),
        Field("Email", "email", 80),
        Field("Phone", "phone", 40),
        Field("MobilePhone", "phone", 40),
        Field("Title", "string", 128),
        Field("Description", "textarea", 32000),
    ]


_WHO = ("Contact", "Lead")
_WHAT = ("Account",)


def _activity_custom() -> list[Field]:
    """Custom fields of Activity, which Salesforce shows on Task and Event alike.

    Activity custom fields cannot be External IDs or unique, so no upsert by them: Concord reads by them
    before it creates. The deploy creates both on Activity (Text 255): the mailbox event's iCalendar UID,
    and the logged email's Internet Message-ID.
    """
    return [Field("Concord_ICalUID__c", "string", 255), Field("Concord_Message_ID__c", "string", 255)]


def _types() -> dict[str, SObjectType]:
    def build(name: str, prefix: str, label: str, fields: list[Field], **compounds: tuple[str, ...]) -> SObjectType:
        return SObjectType(name, prefix, label, {f.name: f for f in _system_fields() + fields}, dict(compounds))

    return {
        "Account": build(
            "Account",
            "001",
            "Account",
            [
                Field("Name", "string", 255, required=True),
                Field("Phone", "phone", 40),
                Field("Website", "string", 255),
                Field("Industry", "picklist", 255),
                Field("Description", "textarea", 32000),
                *_address("Billing"),
                *_owned(),
            ],
            **dict([_address_compound("BillingAddress", "Billing")]),
        ),
        "Contact": build(
            "Contact",
            "003",
            "Contact",
            [
                *_person(),
                Field("HomePhone", "phone", 40),
                Field("Department", "string", 80),
                Field("Birthdate", "date"),
                Field("AccountId", "reference", references=("Account",)),
                *_address("Mailing"),
                *_owned(),
            ],
            Name=("Salutation", "FirstName", "LastName"),
            **dict([_address_compound("MailingAddress", "Mailing")]),
        ),
        "Lead": build(
            "Lead",
            "00Q",
            "Lead",
            [
                *_person(),
                Field("Company", "string", 255, required=True),
                Field("Status", "picklist", 255),
                Field("IsConverted", "boolean", createable=False, updateable=False),
                Field("ConvertedContactId", "reference", createable=False, updateable=False, references=("Contact",)),
                Field("ConvertedAccountId", "reference", createable=False, updateable=False, references=("Account",)),
                Field("ConvertedDate", "date", createable=False, updateable=False),
                *_address(""),
                *_owned(),
            ],
            Name=("Salutation", "FirstName", "LastName"),
            **dict([_address_compound("Address", "")]),
        ),
        "Event": build(
            "Event",
            "00U",
            "Event",
            [
                Field("Subject", "string", 255),
                Field("StartDateTime", "datetime"),
                Field("EndDateTime", "datetime"),
                Field("ActivityDateTime", "datetime"),
                Field("ActivityDate", "date"),
                Field("DurationInMinutes", "int"),
                Field("IsAllDayEvent", "boolean"),
                Field("Location", "string", 255),
                Field("Description", "textarea", 32000),
                Field("IsPrivate", "boolean"),
                Field("ShowAs", "picklist", 40),
                Field("WhoId", "reference", references=_WHO),
                Field("WhatId", "reference", references=_WHAT),
                Field("IsRecurrence2", "boolean"),
                Field("Recurrence2PatternText", "textarea", 1024),
                Field("Recurrence2PatternStartDate", "datetime"),
                *_activity_custom(),
                *_owned(),
            ],
        ),
        "EventRelation": build(
            "EventRelation",
            "0RE",
            "Event Relation",
            [
                Field("EventId", "reference", required=True, updateable=False, references=("Event",)),
                Field("RelationId", "reference", required=True, updateable=False, references=(*_WHO, "User")),
                Field("IsInvitee", "boolean"),
                Field("IsWhat", "boolean", updateable=False),
                Field("IsParent", "boolean"),
                Field("Status", "picklist", 40),
            ],
        ),
        "Task": build(
            "Task",
            "00T",
            "Task",
            [
                Field("Subject", "string", 255),
                Field("Description", "textarea", 32000),
                Field("ActivityDate", "date"),
                Field("Status", "picklist", 40),
                Field("Priority", "picklist", 40),
                Field("TaskSubtype", "picklist", 40),
                Field("WhoId", "reference", references=_WHO),
                Field("WhatId", "reference", references=_WHAT),
                *_activity_custom(),
                *_owned(),
            ],
        ),
        # Shared Activities: a Task relates to one Lead or up to 50 Contacts, and to one "what" (IsWhat).
        # TaskRelation supports create, delete and query, not update (Object Reference, TaskRelation).
        "TaskRelation": build(
            "TaskRelation",
            "0RT",
            "Task Relation",
            [
                Field("TaskId", "reference", required=True, updateable=False, references=("Task",)),
                Field("RelationId", "reference", required=True, updateable=False, references=(*_WHO, *_WHAT)),
                Field("IsWhat", "boolean", updateable=False),
                Field("AccountId", "reference", createable=False, updateable=False, references=("Account",)),
            ],
        ),
        "TaskWhoRelation": SObjectType(
            "TaskWhoRelation",
            "0RT",
            "Task Who Relation",
            {
                f.name: f
                for f in [
                    *_system_fields(),
                    Field("TaskId", "reference", createable=False, updateable=False, references=("Task",)),
                    Field("RelationId", "reference", createable=False, updateable=False, references=_WHO),
                    Field("Type", "string", 50, createable=False, updateable=False),
                    Field("AccountId", "reference", createable=False, updateable=False, references=("Account",)),
                ]
            },
            view_of="TaskRelation",
        ),
        "User": build(
            "User",
            "005",
            "User",
            [
                Field("Username", "string", 80, required=True),
                Field("FirstName", "string", 40),
                Field("LastName", "string", 80, required=True),
                Field("Name", "string", 121, createable=False, updateable=False),
                Field("Email", "email", 128, required=True),
                Field("Alias", "string", 8),
                Field("IsActive", "boolean"),
                Field("TimeZoneSidKey", "picklist", 40),
            ],
        ),
    }


TYPES: dict[str, SObjectType] = _types()
BY_PREFIX: dict[str, SObjectType] = {t.prefix: t for t in TYPES.values() if not t.view_of}

# Child relationships a parent names in a subquery: relationship → (child sObject, the child's parent field).
CHILDREN: dict[str, dict[str, tuple[str, str]]] = {
    "Account": {"Contacts": ("Contact", "AccountId")},
    "Event": {"EventRelations": ("EventRelation", "EventId")},
    "Task": {"TaskRelations": ("TaskRelation", "TaskId"), "TaskWhoRelations": ("TaskWhoRelation", "TaskId")},
}


def child_relationship(parent: SObjectType, name: str) -> tuple[str, SObjectType, str] | None:
    """(canonical relationship name, child type, parent field) of ``name`` on ``parent``, case-insensitively."""
    for relationship, (child, parent_field) in CHILDREN.get(parent.name, {}).items():
        if relationship.lower() == name.lower():
            return relationship, TYPES[child], parent_field
    return None


# Defaults Salesforce fills in on create when the field is not given.
DEFAULTS: dict[str, dict[str, Any]] = {
    "Lead": {"Status": "Open - Not Contacted", "IsConverted": False},
    "Event": {"IsAllDayEvent": False, "IsPrivate": False, "ShowAs": "Busy", "IsRecurrence2": False},
    "EventRelation": {"IsInvitee": True, "IsWhat": False, "IsParent": False, "Status": "New"},
    "Task": {"Status": "Not Started", "Priority": "Normal"},
    "TaskRelation": {"IsWhat": False},
    "User": {"IsActive": True, "TimeZoneSidKey": "GMT"},
}


def lookup_type(name: str) -> SObjectType | None:
    """sObject names are case-insensitive too."""
    for type_name, spec in TYPES.items():
        if type_name.lower() == name.lower():
            return spec
    return None


def type_of_id(record_id: str) -> SObjectType | None:
    return BY_PREFIX.get(record_id[:3])


# ------------------------------------------------------------------------------------ datetimes


def sf_datetime(moment: datetime) -> str:
    """Salesforce's REST datetime format: ``2026-11-23T12:15:16.000+0000``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(value: str) -> datetime:
    """Parse what Salesforce accepts: ISO 8601 with ``Z``, ``+00:00`` or ``+0000``; naive means UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
        text = text[:-2] + ":" + text[-2:]
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_date(value: str) -> date:
    return date.fromisoformat(value.strip()[:10])


def now() -> datetime:
    return datetime.now(UTC)
