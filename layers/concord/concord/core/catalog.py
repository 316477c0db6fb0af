"""What a mapping may name: the Salesforce fields Concord knows per object (and which are read-only),
and the top-level properties of each provider's JSON per object kind.

Salesforce custom fields (``…__c``) are accepted without being listed: an org's schema is not known
here (the worker's describe call is the place to catch a missing custom field).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["MAILBOX_KEYS", "SALESFORCE_FIELDS", "FieldAccess", "salesforce_access"]

type FieldAccess = Literal["rw", "ro", "relation"]

_SYSTEM: Final[dict[str, FieldAccess]] = {
    "Id": "ro",
    "IsDeleted": "ro",
    "CreatedDate": "ro",
    "CreatedById": "ro",
    "LastModifiedDate": "ro",
    "LastModifiedById": "ro",
    "SystemModstamp": "ro",
    "OwnerId": "rw",
}

_PERSON: Final[dict[str, FieldAccess]] = {
    "FirstName": "rw",
    "LastName": "rw",
    "Salutation": "rw",
    "Name": "ro",
    "Email": "rw",
    "Phone": "rw",
    "MobilePhone": "rw",
    "Fax": "rw",
    "Title": "rw",
    "Description": "rw",
    "LeadSource": "rw",
}

SALESFORCE_FIELDS: Final[dict[str, dict[str, FieldAccess]]] = {
    "Contact": {
        **_SYSTEM,
        **_PERSON,
        "HomePhone": "rw",
        "OtherPhone": "rw",
        "AssistantPhone": "rw",
        "Department": "rw",
        "AccountId": "rw",
        "Account.Name": "relation",
        "MailingStreet": "rw",
        "MailingCity": "rw",
        "MailingState": "rw",
        "MailingPostalCode": "rw",
        "MailingCountry": "rw",
        "OtherStreet": "rw",
        "OtherCity": "rw",
        "OtherState": "rw",
        "OtherPostalCode": "rw",
        "OtherCountry": "rw",
        "Birthdate": "rw",
    },
    "Lead": {
        **_SYSTEM,
        **_PERSON,
        "Company": "rw",
        "Street": "rw",
        "City": "rw",
        "State": "rw",
        "PostalCode": "rw",
        "Country": "rw",
        "Status": "rw",
        "IsConverted": "ro",
    },
    "Event": {
        **_SYSTEM,
        "Subject": "rw",
        "StartDateTime": "rw",
        "EndDateTime": "rw",
        "IsAllDayEvent": "rw",
        "ActivityDate": "rw",
        "ActivityDateTime": "rw",
        "DurationInMinutes": "rw",
        "Location": "rw",
        "Description": "rw",
        "IsPrivate": "rw",
        "ShowAs": "rw",
        "WhoId": "rw",
        "WhatId": "rw",
        "IsRecurrence2": "ro",
        "Recurrence2PatternText": "rw",
        "Recurrence2PatternStartDate": "rw",
        "EventRelations": "relation",
    },
    "Task": {
        **_SYSTEM,
        "Subject": "rw",
        "Description": "rw",
        "ActivityDate": "rw",
        "Status": "rw",
        "Priority": "rw",
        "TaskSubtype": "rw",
        "WhoId": "rw",
        "WhatId": "rw",
        "TaskWhoRelations": "relation",
    },
}

MAILBOX_KEYS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("graph", "contacts"): frozenset(
        [
            "id",
            "changeKey",
            "lastModifiedDateTime",
            "parentFolderId",
            "givenName",
            "surname",
            "middleName",
            "displayName",
            "nickName",
            "title",
            "generation",
            "initials",
            "fileAs",
            "emailAddresses",
            "imAddresses",
            "businessPhones",
            "mobilePhone",
            "homePhones",
            "jobTitle",
            "department",
            "companyName",
            "officeLocation",
            "profession",
            "manager",
            "assistantName",
            "businessAddress",
            "homeAddress",
            "otherAddress",
            "birthday",
            "personalNotes",
            "spouseName",
            "children",
            "businessHomePage",
            "categories",
        ]
    ),
    ("graph", "events"): frozenset(
        [
            "id",
            "changeKey",
            "lastModifiedDateTime",
            "iCalUId",
            "subject",
            "body",
            "bodyPreview",
            "start",
            "end",
            "isAllDay",
            "location",
            "locations",
            "attendees",
            "organizer",
            "isOrganizer",
            "sensitivity",
            "showAs",
            "type",
            "seriesMasterId",
            "recurrence",
            "isCancelled",
            "categories",
            "importance",
            "isReminderOn",
            "reminderMinutesBeforeStart",
            "isOnlineMeeting",
            "onlineMeeting",
            "responseStatus",
            "webLink",
        ]
    ),
    ("graph", "emails"): frozenset(
        [
            "id",
            "subject",
            "from",
            "sender",
            "toRecipients",
            "ccRecipients",
            "bccRecipients",
            "receivedDateTime",
            "sentDateTime",
            "bodyPreview",
            "body",
            "internetMessageId",
            "conversationId",
            "hasAttachments",
            "importance",
            "isRead",
        ]
    ),
    ("google", "contacts"): frozenset(
        [
            "resourceName",
            "etag",
            "metadata",
            "names",
            "nicknames",
            "emailAddresses",
            "phoneNumbers",
            "organizations",
            "addresses",
            "birthdays",
            "memberships",
            "biographies",
            "urls",
            "relations",
            "occupations",
            "userDefined",
        ]
    ),
    ("google", "events"): frozenset(
        [
            "id",
            "etag",
            "status",
            "iCalUID",
            "summary",
            "description",
            "location",
            "start",
            "end",
            "attendees",
            "organizer",
            "creator",
            "visibility",
            "transparency",
            "recurrence",
            "recurringEventId",
            "originalStartTime",
            "updated",
            "colorId",
            "reminders",
            "conferenceData",
            "hangoutLink",
            "htmlLink",
        ]
    ),
    ("google", "emails"): frozenset(
        ["id", "threadId", "labelIds", "snippet", "internalDate", "payload", "historyId", "sizeEstimate"]
    ),
}


def salesforce_access(sobject: str, field: str) -> FieldAccess | None:
    """How Concord may use ``field`` on ``sobject``: ``rw``, ``ro`` (formula/system), ``relation``
    (written through a ``relate`` operation), or ``None`` when unknown. Custom fields are ``rw``."""
    known = SALESFORCE_FIELDS.get(sobject, {})
    if field in known:
        return known[field]
    if field.endswith("__c") and "." not in field:
        return "rw"
    return None
