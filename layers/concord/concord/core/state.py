"""The inputs a plan reads besides the mapping: the two records, the link between them and the
connection's options. All frozen; :class:`LinkState` round-trips through JSON (``to_dict``/``from_dict``)
because the worker keeps it in DynamoDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from concord.core.mapping import ObjectKind
    from concord.core.merge import Direction
    from concord.core.normalize import Value

__all__ = [
    "ConnectionOptions",
    "DeleteLimits",
    "LinkState",
    "MailboxRecord",
    "SalesforceRecord",
    "Side",
]

type Side = Literal["salesforce", "mailbox"]
type LinkStatus = Literal["linked", "tombstone"]
type DeletedSide = Literal["salesforce", "mailbox", "both"]


@dataclass(frozen=True, slots=True)
class SalesforceRecord:
    """A Salesforce record as fetched: ``data`` is the REST JSON (relationship fields nested, e.g.
    ``{"Account": {"Name": …}}``; an Event's ``EventRelations`` as a SOQL child relationship).

    ``deleted`` marks a record known to be deleted (``IsDeleted``, 404, ``ENTITY_IS_DELETED``); pass
    ``None`` instead of a record only when there is no record at all, never for a failed fetch.
    ``version`` defaults to ``SystemModstamp`` (then ``LastModifiedDate``); ``modified`` (for
    ``most_recent``) to ``LastModifiedDate``.
    """

    id: str
    sobject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    version: str | None = None
    modified: str | None = None

    @property
    def current_version(self) -> str | None:
        """The version used for change detection."""
        if self.version is not None:
            return self.version
        found = self.data.get("SystemModstamp") or self.data.get("LastModifiedDate")
        return str(found) if found is not None else None

    @property
    def modified_at(self) -> Any:
        """The last-modified time as sent (ISO text or epoch ms), or ``None``."""
        return self.modified or self.data.get("LastModifiedDate") or self.data.get("SystemModstamp")


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """A Graph or Google item as fetched (contact, event, message JSON).

    ``version`` defaults to ``changeKey`` / ``@odata.etag`` (Graph) or ``etag`` (Google); ``modified``
    to ``lastModifiedDateTime`` (Graph), ``updated`` (Google events) or the person's
    ``metadata.sources[0].updateTime``. ``in_default_calendar`` says whether an event came from the
    user's default calendar (the worker knows which calendar it read).
    """

    id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    version: str | None = None
    modified: str | None = None
    in_default_calendar: bool = True

    @property
    def current_version(self) -> str | None:
        """The version used for change detection."""
        if self.version is not None:
            return self.version
        data = self.data
        found = data.get("changeKey") or data.get("@odata.etag") or data.get("etag")
        return str(found) if found is not None else None

    @property
    def modified_at(self) -> Any:
        """The last-modified time as sent, or ``None``."""
        if self.modified:
            return self.modified
        data = self.data
        found = data.get("lastModifiedDateTime") or data.get("updated")
        if found:
            return found
        metadata = data.get("metadata")
        if isinstance(metadata, Mapping):
            sources = metadata.get("sources")
            if isinstance(sources, list) and sources and isinstance(sources[0], Mapping):
                return sources[0].get("updateTime")
        return None


def _to_json(values: Mapping[str, Value]) -> dict[str, Any]:
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def _from_json(values: Mapping[str, Any]) -> dict[str, Value]:
    return {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}


@dataclass(frozen=True, slots=True)
class LinkState:
    """What Concord remembers about a linked pair.

    - ``salesforce_values`` / ``mailbox_values``: the snapshot, the canonical value of every mapped field
      as each side held it after the last successful sync (see merge.py for why per side);
    - versions of both sides after that sync (``None`` when a write's new version is not yet known:
      the next plan then compares content);
    - ``status`` ``tombstone``: the pair was unlinked because ``deleted_side`` was deleted. A tombstone is
      never revived: any later notice for either id plans nothing. Keep it while the surviving record
      exists (``deleted_side`` ``salesforce``/``mailbox``) and, when ``both`` are gone, for longer than the
      longest redelivery window (Salesforce: 24 h; the store's TTL, not the core, enforces that);
    - ``unconfirmed``: per relation-set field (attendees, participants), the addresses a planned
      ``relate`` asked Salesforce to hold that no read has shown it holding yet. Salesforce relates only
      addresses that resolve to a Contact, Lead or User, so the next plan treats an unconfirmed address
      missing from Salesforce as never held, not as removed (plan.py). :meth:`settle_relation` settles
      them at once when the worker knows the outcome.
    """

    kind: ObjectKind
    salesforce_object: str
    salesforce_id: str | None
    mailbox_id: str | None
    salesforce_version: str | None = None
    mailbox_version: str | None = None
    salesforce_values: Mapping[str, Value] = field(default_factory=dict)
    mailbox_values: Mapping[str, Value] = field(default_factory=dict)
    status: LinkStatus = "linked"
    deleted_side: DeletedSide | None = None
    mapping_fingerprint: str | None = None
    unconfirmed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_tombstone(self) -> bool:
        """True when the pair was unlinked by a delete."""
        return self.status == "tombstone"

    def snapshot(self) -> dict[str, Any]:
        """The field snapshot as JSON: ``{"salesforce": {...}, "mailbox": {...}}``."""
        return {"salesforce": _to_json(self.salesforce_values), "mailbox": _to_json(self.mailbox_values)}

    def with_ids(
        self,
        *,
        salesforce_id: str | None = None,
        mailbox_id: str | None = None,
        salesforce_version: str | None = None,
        mailbox_version: str | None = None,
    ) -> LinkState:
        """A copy with ids/versions the worker learnt while executing the plan (creates, updates)."""
        return replace(
            self,
            salesforce_id=salesforce_id or self.salesforce_id,
            mailbox_id=mailbox_id or self.mailbox_id,
            salesforce_version=salesforce_version or self.salesforce_version,
            mailbox_version=mailbox_version or self.mailbox_version,
        )

    def with_values(self, side: Side, values: Mapping[str, Value]) -> LinkState:
        """A copy whose snapshot holds ``values`` (canonical field values) for ``side``: what the worker
        learnt a side really holds after executing the plan. Other fields keep their snapshot values."""
        if side == "salesforce":
            return replace(self, salesforce_values={**self.salesforce_values, **values})
        return replace(self, mailbox_values={**self.mailbox_values, **values})

    def settle_relation(self, field_name: str, held: Iterable[str]) -> LinkState:
        """A copy after the worker executed a ``relate`` operation for ``field_name`` (``attendees``,
        ``participants``): ``held`` are the addresses of the operation's ``body["emails"]`` that Salesforce
        now relates (those that resolved to a Contact, Lead or User). The Salesforce snapshot becomes
        exactly that set and the field's unconfirmed addresses are settled, so the next sync sees no change
        that nobody made, and never removes an attendee from the mailbox because Salesforce cannot hold it.
        """
        canonical = tuple(sorted({address.strip().lower() for address in held if address and address.strip()}))
        unconfirmed = {name: found for name, found in self.unconfirmed.items() if name != field_name}
        settled = replace(self, unconfirmed=unconfirmed)
        return settled.with_values("salesforce", {field_name: canonical or None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (inverse of :meth:`from_dict`)."""
        return {
            "kind": self.kind,
            "salesforce_object": self.salesforce_object,
            "salesforce_id": self.salesforce_id,
            "mailbox_id": self.mailbox_id,
            "salesforce_version": self.salesforce_version,
            "mailbox_version": self.mailbox_version,
            "snapshot": self.snapshot(),
            "status": self.status,
            "deleted_side": self.deleted_side,
            "mapping_fingerprint": self.mapping_fingerprint,
            "unconfirmed": {name: list(found) for name, found in self.unconfirmed.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a link from :meth:`to_dict`'s output."""
        snapshot = data.get("snapshot") or {}
        return cls(
            kind=data["kind"],
            salesforce_object=data["salesforce_object"],
            salesforce_id=data.get("salesforce_id"),
            mailbox_id=data.get("mailbox_id"),
            salesforce_version=data.get("salesforce_version"),
            mailbox_version=data.get("mailbox_version"),
            salesforce_values=_from_json(snapshot.get("salesforce") or {}),
            mailbox_values=_from_json(snapshot.get("mailbox") or {}),
            status=data.get("status", "linked"),
            deleted_side=data.get("deleted_side"),
            mapping_fingerprint=data.get("mapping_fingerprint"),
            unconfirmed={name: tuple(found) for name, found in (data.get("unconfirmed") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class DeleteLimits:
    """A mass-delete guard: more than ``count`` deletes, or more than ``share`` of the connection's
    links (once at least ``minimum`` deletes are planned, so that a small connection can lose one
    contact), stops the deletes until on-call approves."""

    count: int
    share: float
    minimum: int = 5


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """One connection's (one mailbox user's) sync options; Lightning Sync's filters among them.

    - ``directions``: per object kind, ``both``, ``to_salesforce`` or ``to_mailbox`` (default both for
      contacts and events; emails only ever go to Salesforce);
    - ``propagate_deletes``: a delete on one side deletes the linked record on the other (off: the pair
      is only unlinked);
    - ``sync_private_events``: private events sync (off by default);
    - ``default_calendar_only``: events only from the default calendar;
    - ``contact_folder_id`` (Graph) / ``contact_group`` (Google): contacts only from the
      "Salesforce Sync" folder or group. Graph ``None``: the adapters use (and make) the folder named
      "Salesforce Sync" for writes, channels and catch-ups, and the plan filters nothing; Google
      ``None``: every contact of the user syncs;
    - ``event_window_past_days`` / ``event_window_future_days``: events outside the window do not sync
      (``None``: unbounded);
    - ``invitation_mode``: Salesforce → mailbox updates to meetings with attendees are allowed (they mail
      every attendee);
    - ``sync_private_events`` off also governs an event that turns private after it was linked: its
      ``IsPrivate`` still reaches Salesforce, but its ``private_content`` fields (mapping.py) are no
      longer updated while it stays private;
    - ``user_email``: the mailbox owner's address (organiser check when the provider does not say);
    - ``new_contact_object``: what a mailbox contact without a match becomes in Salesforce;
    - ``phone_region``: the region of phone numbers written without a country code;
    - ``delete_limits``: the mass-delete guard per object kind; ``mass_delete_approved``: on-call
      approved the current deletes.
    - ``log_received_email``: received mail is logged as well as sent mail (off: only what the user sent).
    """

    provider: Literal["graph", "google"] = "graph"
    directions: Mapping[str, Direction] = field(
        default_factory=lambda: {"contact": "both", "event": "both", "email": "to_salesforce"}
    )
    propagate_deletes: bool = False
    sync_private_events: bool = False
    default_calendar_only: bool = True
    contact_folder_id: str | None = None
    contact_group: str | None = None
    event_window_past_days: int | None = 30
    event_window_future_days: int | None = 365
    invitation_mode: bool = False
    user_email: str | None = None
    new_contact_object: Literal["Contact", "Lead"] = "Contact"
    phone_region: str = "US"
    delete_limits: Mapping[str, DeleteLimits] = field(
        default_factory=lambda: {"contact": DeleteLimits(250, 0.25), "event": DeleteLimits(50, 0.10)}
    )
    mass_delete_approved: bool = False
    log_received_email: bool = True

    def direction(self, kind: str) -> Direction:
        """The connection's direction for an object kind."""
        if kind == "email":
            return "to_salesforce"
        return self.directions.get(kind, "both")
