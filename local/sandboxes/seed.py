"""Seed data shared by the sandboxes for ``make run``: one Salesforce org and two mailboxes
(Microsoft 365 and Google) whose contacts and events partly overlap the org's.

Overlap is the point: matching before creating is what keeps a first sync from duplicating people.
"""

from __future__ import annotations

from dataclasses import dataclass

ORG_ID = "00D5g000004SEEDAAA"  # 18 characters, as Salesforce sends in Outbound Messages
M365_USER = "alex@contoso.example"
GOOGLE_USER = "sam@fabrikam.example"


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email: str
    company: str
    title: str
    phone: str
    in_salesforce: bool
    in_m365: bool
    in_google: bool
    lead: bool = False  # a Lead in Salesforce rather than a Contact


PEOPLE: tuple[Person, ...] = (
    Person(
        "Ada", "Lovelace", "ada@analytical.example", "Analytical Engines", "CTO", "+44 20 7946 0001", True, True, True
    ),
    Person("Grace", "Hopper", "grace@navy.example", "US Navy", "Rear Admiral", "+1 202 555 0101", True, True, False),
    Person(
        "Alan",
        "Turing",
        "alan@bletchley.example",
        "Bletchley Park",
        "Cryptanalyst",
        "+44 1908 640404",
        True,
        False,
        True,
    ),
    Person(
        "Katherine", "Johnson", "katherine@nasa.example", "NASA", "Mathematician", "+1 757 555 0199", True, True, False
    ),
    Person(
        "Linus", "Torvalds", "linus@kernel.example", "Linux Foundation", "Fellow", "+1 503 555 0142", True, False, False
    ),
    Person(
        "Margaret",
        "Hamilton",
        "margaret@hamilton.example",
        "Hamilton Technologies",
        "CEO",
        "+1 617 555 0123",
        True,
        True,
        True,
        lead=True,
    ),
    Person(
        "Tim", "Berners-Lee", "tim@w3.example", "W3C", "Director", "+44 20 7946 0002", True, False, False, lead=True
    ),
    Person("Barbara", "Liskov", "barbara@mit.example", "MIT", "Professor", "+1 617 555 0177", False, True, False),
    Person(
        "Donald",
        "Knuth",
        "don@stanford.example",
        "Stanford",
        "Professor Emeritus",
        "+1 650 555 0111",
        False,
        False,
        True,
    ),
    Person("Frances", "Allen", "fran@ibm.example", "IBM", "Fellow", "+1 914 555 0166", False, True, True),
)


@dataclass(frozen=True)
class Meeting:
    subject: str
    start: str  # ISO 8601 UTC
    end: str
    location: str
    attendees: tuple[str, ...]  # emails of PEOPLE
    ical_uid: str
    in_salesforce: bool
    in_m365: bool
    in_google: bool


MEETINGS: tuple[Meeting, ...] = (
    Meeting(
        "Quarterly review",
        "2026-12-01T15:00:00Z",
        "2026-12-01T16:00:00Z",
        "Board room",
        ("ada@analytical.example", "grace@navy.example"),
        "040000008200E00074C5B7101A82E0080000000001",
        True,
        True,
        False,
    ),
    Meeting(
        "Engine demo",
        "2026-12-02T10:00:00Z",
        "2026-12-02T11:30:00Z",
        "Lab 2",
        ("ada@analytical.example",),
        "seed-engine-demo@fabrikam.example",
        True,
        False,
        True,
    ),
    Meeting(
        "Contract call",
        "2026-12-03T17:00:00Z",
        "2026-12-03T17:30:00Z",
        "Phone",
        ("katherine@nasa.example",),
        "040000008200E00074C5B7101A82E0080000000003",
        False,
        True,
        False,
    ),
    Meeting(
        "Kernel roadmap",
        "2026-12-04T09:00:00Z",
        "2026-12-04T10:00:00Z",
        "Video",
        ("linus@kernel.example",),
        "seed-kernel-roadmap@example",
        True,
        False,
        False,
    ),
    Meeting(
        "Lunch with Don",
        "2026-12-05T12:00:00Z",
        "2026-12-05T13:00:00Z",
        "Cafe",
        ("don@stanford.example",),
        "seed-lunch-don@fabrikam.example",
        False,
        False,
        True,
    ),
)
