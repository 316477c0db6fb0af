"""Meetings: what an organiser's writes mail to attendees, and what a write to someone else's meeting does.

The sandbox records one entry per mail an attendee would receive (``attendee_mails``, also in
``GET /_sandbox/state``), so a test can count them; a write to a meeting the mailbox user does not organise
changes that user's copy only, mails nobody, and is recorded in ``attendee_copy_writes``."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from concord.adapters.http import ConflictError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER


def _attendee(address: str) -> dict[str, Any]:
    return {"emailAddress": {"address": address, "name": address}, "type": "required"}


def _meeting(*guests: str) -> dict[str, Any]:
    return {
        "subject": "Quarterly review",
        "start": {"dateTime": "2026-12-15T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-15T11:00:00", "timeZone": "UTC"},
        "attendees": [_attendee(g) for g in guests],
    }


def _mails(sandbox: GraphSandbox) -> Counter[tuple[str, str]]:
    return Counter((m["recipient"], m["kind"]) for m in sandbox.attendee_mails)


def test_every_organiser_write_mails_every_attendee(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    created = graph.create_event(USER, _meeting("ann@example.com", "bob@example.com"))
    assert _mails(graph_sandbox) == {("ann@example.com", "invitation"): 1, ("bob@example.com", "invitation"): 1}

    graph.update_event(USER, created["id"], {"subject": "Quarterly review (moved)"})
    graph.update_event(USER, created["id"], {"attendees": [_attendee("ann@example.com"), _attendee("cy@example.com")]})
    graph.delete_event(USER, created["id"])
    assert _mails(graph_sandbox) == {
        ("ann@example.com", "invitation"): 1,
        ("ann@example.com", "update"): 2,
        ("ann@example.com", "cancellation"): 1,
        ("bob@example.com", "invitation"): 1,
        ("bob@example.com", "update"): 1,
        ("bob@example.com", "cancellation"): 1,
        ("cy@example.com", "invitation"): 1,
        ("cy@example.com", "cancellation"): 1,
    }
    state = httpx.get(f"{graph_sandbox.url}/_sandbox/state", verify=ca_bundle_path()).json()
    assert len(state["attendee_mails"]) == sum(_mails(graph_sandbox).values()) == 9


def test_a_create_answered_after_commit_invites_once(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    graph_sandbox.fail_after_commit(1, 503)
    graph.create_event(USER, _meeting("ann@example.com"))
    assert _mails(graph_sandbox) == {("ann@example.com", "invitation"): 1}


def test_an_update_with_if_match_is_not_mailed_twice_after_a_lost_answer(
    graph: GraphClient, graph_sandbox: GraphSandbox
) -> None:
    created = graph.create_event(USER, _meeting("ann@example.com"))
    graph_sandbox.fail_after_commit(1, 503)
    with pytest.raises(ConflictError):  # the retry meets a 412: the first PATCH was committed, nothing is resent
        graph.update_event(USER, created["id"], {"subject": "Once"}, etag=created["@odata.etag"])
    assert _mails(graph_sandbox)[("ann@example.com", "update")] == 1


def test_a_write_to_someone_elses_meeting_mails_nobody(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    window = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 12, 31, tzinfo=UTC)
    theirs = next(e for e in graph.list_events(USER, *window) if e["subject"] == "Navy briefing")
    assert theirs["isOrganizer"] is False
    graph.update_event(USER, theirs["id"], {"subject": "My notes"})
    graph.delete_event(USER, theirs["id"])
    assert graph_sandbox.attendee_mails == []
    assert [w["action"] for w in graph_sandbox.attendee_copy_writes] == ["updated", "deleted"]
