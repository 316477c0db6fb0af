"""Mail for the sync worker: the inbox and sent items, listed and followed by delta."""

from __future__ import annotations

from typing import TYPE_CHECKING

from concord.adapters.graph import MESSAGE_FIELDS
from local.sandboxes import seed

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER


def test_seeded_inbox_and_sent_items_carry_what_the_worker_reads(graph: GraphClient) -> None:
    inbox, sent = graph.list_messages(USER, "inbox"), graph.list_messages(USER, "sentitems")
    assert inbox and sent
    for message in inbox + sent:
        assert set(MESSAGE_FIELDS.split(",")) <= set(message)
    assert all(m["toRecipients"][0]["emailAddress"]["address"] == USER for m in inbox)
    assert all(m["from"]["emailAddress"]["address"] == USER for m in sent)


def test_messages_delta_sees_a_new_message_once(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    first = graph.messages_delta(USER, "inbox")
    assert first.changed and first.delta_link
    added = graph_sandbox.put_message(
        USER,
        "inbox",
        {
            "subject": "New lead",
            "from": {"emailAddress": {"name": "Dana", "address": "dana@example.com"}},
            "ccRecipients": [{"emailAddress": {"name": "Eve", "address": "eve@example.com"}}],
        },
    )
    changes = graph.messages_delta(USER, "inbox", first.delta_link)
    assert [m["id"] for m in changes.changed] == [added["id"]] and changes.changed[0]["internetMessageId"]
    assert graph.messages_delta(USER, "inbox", changes.delta_link).changed == []
    assert graph.messages_delta(USER, "sentitems").changed  # each folder has its own round


def test_quoted_well_known_folder_form(graph: GraphClient) -> None:
    url = f"{graph.graph_url}/users/{USER}/mailFolders('sentitems')/messages/delta()"
    assert graph._call("GET", url).json()["value"]
