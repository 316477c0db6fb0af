"""Realistic records shared by the core tests and the benchmark."""

from __future__ import annotations

from typing import Any

from concord.core import LinkState, MailboxRecord, SalesforceRecord

SF_CONTACT: dict[str, Any] = {
    "Id": "0035e000001AbcdAAA",
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Email": "Ada.Lovelace@Example.com ",
    "Phone": "(415) 555-0100",
    "MobilePhone": "+1 415 555 0101",
    "HomePhone": "415.555.0102",
    "Title": "CTO",
    "Department": "Engineering",
    "Account": {"Name": "Analytical Engines"},
    "MailingStreet": "1 Infinite Loop",
    "MailingCity": "Cupertino",
    "MailingState": "CA",
    "MailingPostalCode": "95014",
    "MailingCountry": "USA",
    "Birthdate": "1815-12-10",
    "LastModifiedDate": "2026-01-05T10:00:00.000+0000",
    "SystemModstamp": "2026-01-05T10:00:00.000+0000",
}

GRAPH_CONTACT: dict[str, Any] = {
    "id": "AAMkAGI2contact",
    "changeKey": "EQAAABYAAAB",
    "lastModifiedDateTime": "2026-01-04T09:00:00Z",
    "parentFolderId": "folder-sync",
    "givenName": "Ada",
    "surname": "Lovelace",
    "emailAddresses": [{"name": "Ada", "address": "ada.lovelace@example.com"}],
    "businessPhones": ["+14155550100"],
    "mobilePhone": "415-555-0101",
    "homePhones": ["+1 (415) 555-0102"],
    "jobTitle": "CTO",
    "department": "Engineering",
    "companyName": "Analytical Engines",
    "businessAddress": {
        "street": "1 Infinite Loop",
        "city": "Cupertino",
        "state": "CA",
        "postalCode": "95014",
        "countryOrRegion": "USA",
    },
    "birthday": "1815-12-10T11:59:00Z",
}

SF_EVENT: dict[str, Any] = {
    "Id": "00U5e000000EvtAAA",
    "Subject": "Quarterly review",
    "StartDateTime": "2026-03-10T16:00:00.000+0000",
    "EndDateTime": "2026-03-10T17:00:00.000+0000",
    "IsAllDayEvent": False,
    "Location": "Room 4",
    "Description": "Agenda:\nNumbers\nPlans",
    "IsPrivate": False,
    "ShowAs": "Busy",
    "Concord_ICalUID__c": "040000008200E00074C5B7101A82E008",
    "EventRelations": {
        "totalSize": 5,
        "done": True,
        "records": [{"RelationId": f"003{i}", "Relation": {"Email": f"guest{i}@example.com"}} for i in range(5)],
    },
    "LastModifiedDate": "2026-01-05T10:00:00.000+0000",
    "SystemModstamp": "2026-01-05T10:00:00.000+0000",
}

GRAPH_EVENT: dict[str, Any] = {
    "id": "AAMkAGI2event",
    "changeKey": "DwAAABYAAAB",
    "iCalUId": "040000008200E00074C5B7101A82E008",
    "lastModifiedDateTime": "2026-01-04T09:00:00Z",
    "subject": "Quarterly review",
    "body": {"contentType": "html", "content": "<html><body><p>Agenda:</p><p>Numbers<br>Plans</p></body></html>"},
    "start": {"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2026-03-10T10:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "isAllDay": False,
    "location": {"displayName": "Room 4"},
    "sensitivity": "normal",
    "showAs": "busy",
    "isOrganizer": True,
    "attendees": [
        {"emailAddress": {"name": f"Guest {i}", "address": f"Guest{i}@Example.com"}, "type": "required"}
        for i in range(5)
    ],
}


def contact_pair() -> tuple[SalesforceRecord, MailboxRecord]:
    return (
        SalesforceRecord(id=SF_CONTACT["Id"], sobject="Contact", data=dict(SF_CONTACT)),
        MailboxRecord(id=GRAPH_CONTACT["id"], data=dict(GRAPH_CONTACT)),
    )


def event_pair() -> tuple[SalesforceRecord, MailboxRecord]:
    return (
        SalesforceRecord(id=SF_EVENT["Id"], sobject="Event", data=dict(SF_EVENT)),
        MailboxRecord(id=GRAPH_EVENT["id"], data=dict(GRAPH_EVENT)),
    )


def linked(link: LinkState | None) -> LinkState:
    assert link is not None
    return link
