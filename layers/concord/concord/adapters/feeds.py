"""The catch-up's change feeds: what changed since a cursor, per provider, as ``concord.ports`` words it.

* :class:`GraphFeed`: delta queries (contacts of the sync folder, the calendar view of the connection's
  event window, sent items and, when received mail is logged, the inbox); the cursor is the delta link,
  or for mail a JSON object of one delta link per folder.
* :class:`GoogleFeed`: People and Calendar sync tokens, and the Gmail history id (compared as an
  integer and never moved backwards; a full load takes the mailbox's history id *before* listing, so
  nothing that arrives during the listing is missed). A full load of contacts keeps the members of the
  connection's contact group, one of events the events of its window, one of mail the user's own
  messages (``from:`` the user) unless received mail is logged too.
* :class:`SalesforceFeed`: the org-wide ``SystemModstamp`` query per object (``queryAll``, deleted
  records included), owners in chunks, and the records a user owns for a full load.

An expired cursor raises :class:`~concord.ports.CursorExpired` with a fixed reason: the provider's error
text is not copied, and the cursor (a delta link holds a token) never is. A cursor that cannot be read
(not this feed's format) is treated the same way: only a full load can start it afresh. Other connector
errors propagate unchanged (the caller retries a :class:`~concord.adapters.http.TransientError`).

A full load (``cursor`` ``None``) lists live items only; an incremental round reports removals too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from concord.adapters.http import ResyncRequired
from concord.adapters.soql import in_list, literal, quote
from concord.ports import CursorExpired, FeedChange, FeedPage

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from concord.adapters.google import GoogleClient
    from concord.adapters.graph import GraphClient
    from concord.adapters.salesforce import SalesforceClient
    from concord.core import ConnectionOptions
    from concord.notices import ObjectType
    from concord.ports import Connection

__all__ = ["FULL_LOAD_MESSAGES", "GoogleFeed", "GraphFeed", "OWNERS_PER_QUERY", "SalesforceFeed"]

#: An unbounded event window still needs bounds for Graph's calendar view: this many days each way.
UNBOUNDED_DAYS = 5 * 365
#: A full load of mail lists at most this many of the newest messages (a re-sync is bounded).
FULL_LOAD_MESSAGES = 500
#: Owner ids per watermark query: 300 18-character ids keep a query far below SOQL's 100,000 characters.
OWNERS_PER_QUERY = 300


def event_window(options: ConnectionOptions, now: datetime) -> tuple[datetime, datetime]:
    """The connection's event window around ``now``; an unbounded side becomes :data:`UNBOUNDED_DAYS`
    (Graph's calendar view needs both bounds)."""
    start, end = window_bounds(options, now)
    return (
        start if start is not None else now - timedelta(days=UNBOUNDED_DAYS),
        end if end is not None else now + timedelta(days=UNBOUNDED_DAYS),
    )


def window_bounds(options: ConnectionOptions, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The connection's event window around ``now``, ``None`` for a side it leaves unbounded."""
    past, future = options.event_window_past_days, options.event_window_future_days
    return (
        now - timedelta(days=past) if past is not None else None,
        now + timedelta(days=future) if future is not None else None,
    )


class GraphFeed:
    """:class:`concord.ports.MailboxFeed` on Microsoft Graph delta queries."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self._folders: dict[str, str] = {}

    def calls(self) -> int:
        return self.client.transport.calls

    def changes(self, connection: Connection, object_type: ObjectType, cursor: str | None, now: datetime) -> FeedPage:
        user = connection.mailbox_user
        try:
            if object_type == "contact":
                result = self.client.contacts_delta(user, self._folder(connection), cursor)
                return _graph_page([result], result.delta_link, full=cursor is None)
            if object_type == "event":
                start, end = event_window(connection.options, now)
                result = self.client.events_delta(user, start, end, cursor)
                return _graph_page([result], result.delta_link, full=cursor is None)
            if object_type == "email":
                links = _mail_links(cursor)
                folders = ["sentitems", *(["inbox"] if connection.options.log_received_email else [])]
                results = {folder: self.client.messages_delta(user, folder, links.get(folder)) for folder in folders}
                return _graph_page(
                    list(results.values()),
                    json.dumps({f: r.delta_link for f, r in results.items()}, sort_keys=True),
                    full=cursor is None,
                )
        except ResyncRequired:
            raise CursorExpired(f"Graph {object_type} delta token expired (410 syncStateNotFound)") from None
        raise ValueError(f"Graph has no {object_type} feed")

    def _folder(self, connection: Connection) -> str:
        """The connection's contact folder; without one, the sync folder :class:`GraphMailbox` writes to
        (looked up once per user and feed: an idle round then costs one call)."""
        folder = connection.options.contact_folder_id or self._folders.get(connection.mailbox_user)
        if folder is None:
            folder = self.client.ensure_contact_folder(connection.mailbox_user)
            self._folders[connection.mailbox_user] = folder
        return folder


def _mail_links(cursor: str | None) -> dict[str, str]:
    """The mail cursor's delta link per folder. A folder missing from it (received mail logged since the
    last round) starts with a full round of its own."""
    if cursor is None:
        return {}
    try:
        links = json.loads(cursor)
    except ValueError:
        links = None
    if not isinstance(links, dict) or not all(isinstance(v, str) for v in links.values()):
        raise CursorExpired("Graph email cursor unreadable (not a delta link per folder)")
    return links


def _graph_page(results: Iterable[Any], cursor: str, *, full: bool) -> FeedPage:
    changes: dict[str, FeedChange] = {}
    for result in results:
        for item in result.changed:
            changes[str(item["id"])] = FeedChange(str(item["id"]), version=item.get("@odata.etag"))
        if full:
            continue  # a full load lists what is there
        for item_id in result.removed:
            changes[str(item_id)] = FeedChange(str(item_id), deleted=True)
    return FeedPage(list(changes.values()), cursor)


class GoogleFeed:
    """:class:`concord.ports.MailboxFeed` on People and Calendar sync tokens and Gmail history ids."""

    def __init__(self, client: GoogleClient) -> None:
        self.client = client

    def calls(self) -> int:
        return self.client.transport.calls + self.client._token_transport.calls

    def changes(self, connection: Connection, object_type: ObjectType, cursor: str | None, now: datetime) -> FeedPage:
        user = connection.mailbox_user
        if object_type == "contact":
            try:
                delta = self.client.list_contacts(user, sync_token=cursor)
            except ResyncRequired:
                raise CursorExpired("People sync token expired (EXPIRED_SYNC_TOKEN)") from None
            group = connection.options.contact_group if cursor is None else None
            people = [
                FeedChange(str(p["resourceName"]), deleted=_person_deleted(p), version=p.get("etag"))
                for p in delta.items
                if cursor is not None or (not _person_deleted(p) and (group is None or _in_group(p, group)))
            ]
            return FeedPage(people, _required(delta.next_sync_token, "People"))
        if object_type == "event":
            try:
                delta = self.client.list_events(user, sync_token=cursor)
            except ResyncRequired:
                raise CursorExpired("Calendar sync token expired (410 fullSyncRequired)") from None
            # Calendar takes no time bounds with a sync token, so a full load filters the window itself;
            # an incremental round reports every change (the worker's filters judge it).
            start, end = window_bounds(connection.options, now)
            events = [
                FeedChange(str(e["id"]), deleted=e.get("status") == "cancelled", version=e.get("etag"))
                for e in delta.items
                if cursor is not None or (e.get("status") != "cancelled" and _overlaps(e, start, end))
            ]
            return FeedPage(events, _required(delta.next_sync_token, "Calendar"))
        if object_type == "email":
            return self._mail(connection, cursor)
        raise ValueError(f"Google has no {object_type} feed")

    def _mail(self, connection: Connection, cursor: str | None) -> FeedPage:
        user = connection.mailbox_user
        if cursor is None:
            start = self.client.mailbox_history_id(user)  # before the listing: what arrives meanwhile is next
            ids = self.client.list_message_ids(user, query=_mail_query(connection), limit=FULL_LOAD_MESSAGES)
            return FeedPage([FeedChange(i) for i in ids], str(start))
        if not cursor.isascii() or not cursor.isdigit():
            raise CursorExpired("Gmail cursor unreadable (not a history id)")
        since = int(cursor)
        try:
            history = self.client.list_history(user, since)
        except ResyncRequired:
            raise CursorExpired("Gmail history id too old (404)") from None
        return FeedPage([FeedChange(i) for i in history.message_ids], str(max(since, history.history_id)))


def _mail_query(connection: Connection) -> str | None:
    """What a full load of mail lists: everything (Gmail leaves out spam and trash) when received mail is
    logged, else only what the user sent. ``from:`` is the worker's own test of "sent" (the sender is the
    user), and unlike ``in:sent`` it limits the listing before :data:`FULL_LOAD_MESSAGES` cuts it."""
    if connection.options.log_received_email:
        return None
    return f"from:{connection.options.user_email or connection.mailbox_user}"


def _person_deleted(person: dict[str, Any]) -> bool:
    return bool((person.get("metadata") or {}).get("deleted"))


def _in_group(person: dict[str, Any], group: str) -> bool:
    """Whether a person belongs to the contact group named by its resource name (``contactGroups/...``)."""
    return any(
        isinstance(m, dict) and (m.get("contactGroupMembership") or {}).get("contactGroupResourceName") == group
        for m in person.get("memberships") or ()
    )


def _required(token: str | None, api: str) -> str:
    if not token:
        raise ValueError(f"{api} listing ended without a nextSyncToken")
    return token


def _overlaps(event: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    """Whether a Calendar event touches ``[start, end]`` (``None``: unbounded); one whose times cannot be
    read is kept (the worker's filters judge it)."""
    begins, ends = _moment(event.get("start")), _moment(event.get("end"))
    if start is not None and ends is not None and ends < start:
        return False
    return not (end is not None and begins is not None and begins > end)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, dict):
        return None
    raw = value.get("dateTime") or value.get("date")
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SalesforceFeed:
    """:class:`concord.ports.CrmFeed` on SOQL ``queryAll``."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client

    def calls(self) -> int:
        return self.client.calls

    def changed_since(self, sobject: str, since: datetime, owners: Sequence[str]) -> list[FeedChange]:
        """One ``queryAll`` per :data:`OWNERS_PER_QUERY` distinct owners; none without owners."""
        unique = list(dict.fromkeys(owners))
        found: list[FeedChange] = []
        for start in range(0, len(unique), OWNERS_PER_QUERY):
            chunk = unique[start : start + OWNERS_PER_QUERY]
            soql = (
                f"SELECT Id, SystemModstamp, IsDeleted FROM {sobject} "
                f"WHERE SystemModstamp >= {literal(since)} AND OwnerId IN {in_list(chunk)}"
            )
            found += [
                FeedChange(str(r["Id"]), deleted=bool(r.get("IsDeleted")), version=r.get("SystemModstamp"))
                for r in self.client.query_all(soql)
            ]
        return found

    def owned(self, sobject: str, owner: str, now: datetime, options: ConnectionOptions) -> list[FeedChange]:
        """Live records (``query``: the recycle bin left out); events within the window's bounded sides."""
        where = [f"OwnerId = {quote(owner)}"]
        if sobject == "Lead":
            where.append("IsConverted = false")  # a converted Lead syncs as its Contact
        if sobject == "Event":
            start, end = window_bounds(options, now)
            if start is not None:
                where.append(f"EndDateTime >= {literal(start)}")
            if end is not None:
                where.append(f"StartDateTime <= {literal(end)}")
        soql = f"SELECT Id, SystemModstamp FROM {sobject} WHERE {' AND '.join(where)}"
        return [FeedChange(str(r["Id"]), version=r.get("SystemModstamp")) for r in self.client.query(soql)]
