"""plan() never raises for data it cannot sync (its docstring's promise): arbitrary JSON-ish records of
every kind, with and without a link, on both providers, plan a skip with a reason at worst."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concord.core import ConnectionOptions, LinkState, MailboxRecord, ObjectKind, SalesforceRecord, plan
from tests.unit.core.fixtures import GRAPH_CONTACT, GRAPH_EVENT, SF_CONTACT, SF_EVENT

NOW = datetime(2026, 1, 6, tzinfo=UTC)
KINDS: tuple[ObjectKind, ...] = ("contact", "event", "email")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
KEYS = {
    "contact": sorted({*SF_CONTACT, *GRAPH_CONTACT, "names", "birthdays", "organizations", "phoneNumbers"}),
    "event": sorted({*SF_EVENT, *GRAPH_EVENT, "type", "recurrence", "isCancelled", "status", "organizer"}),
    "email": ["subject", "from", "toRecipients", "receivedDateTime", "bodyPreview", "payload", "internalDate"],
}


@st.composite
def _records(draw: st.DrawFn) -> tuple[ObjectKind, dict[str, Any], dict[str, Any], bool, ConnectionOptions]:
    kind = draw(st.sampled_from(KINDS))
    keys = st.sampled_from(KEYS[kind])
    sf = draw(st.dictionaries(keys, JSON, max_size=8))
    mb = draw(st.dictionaries(keys, JSON, max_size=8))
    options = ConnectionOptions(
        provider=draw(st.sampled_from(["graph", "google"])),
        invitation_mode=draw(st.booleans()),
        sync_private_events=draw(st.booleans()),
        propagate_deletes=draw(st.booleans()),
    )
    return kind, sf, mb, draw(st.booleans()), options


@settings(max_examples=400, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_records())
def test_plan_never_raises_for_any_json(
    case: tuple[ObjectKind, dict[str, Any], dict[str, Any], bool, ConnectionOptions],
) -> None:
    kind, sf_data, mb_data, with_link, options = case
    sobject = {"contact": "Contact", "event": "Event", "email": "Task"}[kind]
    salesforce = SalesforceRecord(id="sf1", sobject=sobject, data=sf_data)
    mailbox = MailboxRecord(id="mb1", data=mb_data)
    link = None
    if with_link:
        link = LinkState(kind=kind, salesforce_object=sobject, salesforce_id="sf1", mailbox_id="mb1")
    assert plan(kind, link, salesforce, mailbox, options, now=NOW).operations
    assert plan(kind, None, None, mailbox, options, now=NOW).operations
    assert plan(kind, None, salesforce, None, options, now=NOW).operations
