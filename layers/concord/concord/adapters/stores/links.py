"""The link store on the Links table.

Layout (one partition per connection, ``pk = CONN#<connection_id>``):

- a link is stored as one item per id it has, ``sk = LINK#<kind>#SF#<salesforce id>`` and
  ``sk = LINK#<kind>#MB#<mailbox id>``, both holding the whole link and the same ``lock_version``.
  A read by either id is therefore one strongly consistent BatchGetItem (the ``by_mailbox_id`` index
  is eventually consistent, so a create could not trust it), and since both items are written in one
  TransactWriteItems, each on condition (``attribute_not_exists`` for a new id, ``lock_version`` for
  an id the link already had), two workers can never link the same Salesforce id, or the same mailbox
  id, twice. A link still missing one side's id (a claim, or a tombstone of a side never created) has
  one item. The Salesforce item carries ``salesforce_key`` and the mailbox item ``mailbox_key``, so
  each lookup index holds one entry per link.
- ``sk = COUNT#<kind>`` holds ``live``: the connection's live (non-tombstone) links of that kind,
  added to in the same transaction as the links (``ADD``), so the mass-delete guard's base is one
  GetItem instead of a query over every link.
- a tombstone of a pair deleted on both sides gets ``expires_at`` (the table's TTL) ``tombstone_ttl_s``
  after its last write (default 7 days, at least 48 h: Salesforce redelivers change events for 24 h,
  and a tombstone must outlive every redelivery of the delete it records).

An update (``lock_version`` > 0) first reads the link's current items (one BatchGetItem per 100 keys for
the whole call): the link's ids may have changed since it was stored (a claim learning the id its
create returned, a converted Lead), and the old id's item must go in the same transaction, and the
counter must know whether the stored link was live.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from concord.adapters.stores import codec
from concord.adapters.stores._base import DynamoDB, default_dynamodb
from concord.core import LinkState
from concord.ports import LinkConflict, LinkKey, StoredLink

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable, Sequence

    from concord.core import ObjectKind

__all__ = ["DynamoLinkStore", "LinkItem"]

#: Rounds of a put_many: each round either commits or removes at least one loser; a round cancelled
#: only by contention (two transactions on one item at once) is tried again after a short pause.
MAX_ROUNDS = 8


class LinkItem(Model):
    """One item of the Links table: a link under one of its ids, or a connection's counter."""

    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    link = UnicodeAttribute(null=True)  # LinkState.to_dict() as JSON: the snapshot round-trips exactly
    lock_version = NumberAttribute(null=True)
    salesforce_id = UnicodeAttribute(null=True)
    mailbox_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    salesforce_key = UnicodeAttribute(null=True)
    mailbox_key = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    claimed_at = NumberAttribute(null=True)
    live = NumberAttribute(null=True)


@dataclass(eq=False)  # compared and hashed by identity: two writes are never "the same"
class _Write:
    """One link of a put_many or delete: what is stored now (``old``) and what replaces it (``new``)."""

    given: StoredLink
    new: StoredLink | None
    old: StoredLink | None = None
    attempts: int = 0
    done: StoredLink | None = None

    @property
    def counter(self) -> tuple[str, str]:
        return (self.given.connection_id, self.given.link.kind)

    def item_keys(self) -> tuple[set[str], set[str]]:
        new = {codec.link_sk(self.given.link.kind, s, i) for s, i in codec.link_keys(self.new)} if self.new else set()
        old = {codec.link_sk(self.given.link.kind, s, i) for s, i in codec.link_keys(self.old)} if self.old else set()
        return new, old

    def actions(self) -> int:
        """Item actions in a transaction: a put per new id, a delete per id the link no longer has."""
        new, old = self.item_keys()
        return len(new | old)

    def delta(self) -> int:
        return int(codec.is_live(self.new.link if self.new else None)) - int(
            codec.is_live(self.old.link if self.old else None)
        )


class DynamoLinkStore:
    """:class:`concord.ports.LinkStore` on the Links table (layout in the module docstring).

    ``requests`` counts the DynamoDB API calls this store sent."""

    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: DynamoDB | None = None,
        tombstone_ttl_s: int = codec.DEFAULT_TOMBSTONE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tombstone_ttl_s < codec.MIN_TOMBSTONE_TTL_S:
            raise ValueError("tombstones must outlive Salesforce's 24 h redelivery: keep them at least 48 h")
        self.table_name = table_name
        self.dynamodb = dynamodb or default_dynamodb()
        self.model = self.dynamodb.bind(LinkItem, table_name)
        self.tombstone_ttl_s = tombstone_ttl_s
        self.clock = clock

    @property
    def requests(self) -> int:
        return self.dynamodb.requests_to(self.table_name)

    # ------------------------------------------------------------------ reads

    def get_many(self, keys: Iterable[LinkKey]) -> dict[LinkKey, StoredLink]:
        wanted = {(codec.connection_pk(k.connection_id), codec.link_sk(k.kind, k.side, k.record_id)): k for k in keys}
        found: dict[LinkKey, StoredLink] = {}
        if not wanted:
            return found
        for item in self.model.batch_get(list(wanted), consistent_read=True):
            found[wanted[(item.pk, item.sk)]] = self._stored(item)
        return found

    def count(self, connection_id: str, kind: ObjectKind) -> int:
        try:
            item = self.model.get(codec.connection_pk(connection_id), codec.count_sk(kind), consistent_read=True)
        except self.model.DoesNotExist:
            return 0
        return int(item.live or 0)

    def list(self, connection_id: str, kind: ObjectKind | None = None) -> builtins.list[StoredLink]:
        links = []
        query = self.model.query(
            codec.connection_pk(connection_id),
            self.model.sk.startswith(codec.link_prefix(kind)),
            consistent_read=True,
        )
        for item in query:
            # Each link once: its Salesforce item, or its mailbox item when it has no Salesforce id.
            if "#SF#" in item.sk or item.salesforce_id is None:
                links.append(self._stored(item))
        return links

    # ------------------------------------------------------------------ writes

    def put_many(self, links: Sequence[StoredLink]) -> builtins.list[StoredLink]:
        codec.check_links(links)
        now = self.clock()
        writes = []
        for given in links:
            stored = replace(
                given,
                lock_version=given.lock_version + 1,
                expires_at=codec.tombstone_expiry(given.link, now, self.tombstone_ttl_s),
            )
            writes.append(_Write(given, stored))
        losers = self._commit(writes)
        if losers:
            raise LinkConflict([codec.primary_key(w.given) for w in losers])
        return [w.done for w in writes if w.done is not None]

    def delete(self, link: StoredLink) -> None:
        losers = self._commit([_Write(link, None)])
        if losers:
            raise LinkConflict([codec.primary_key(link)])

    # ------------------------------------------------------------------ internals

    def _stored(self, item: LinkItem) -> StoredLink:
        link = LinkState.from_dict(json.loads(item.link or "{}"))
        return StoredLink(
            connection_id=item.pk.removeprefix("CONN#"),
            link=link,
            lock_version=int(item.lock_version or 0),
            expires_at=int(item.expires_at) if item.expires_at is not None else None,
            claimed_at=int(item.claimed_at) if item.claimed_at is not None else None,
        )

    def _load_old(self, writes: builtins.list[_Write]) -> builtins.list[_Write]:
        """Find what each update replaces; returns the writes that already lost (stored version differs)."""
        updates = [w for w in writes if w.given.lock_version > 0]
        keys = {
            LinkKey(w.given.connection_id, w.given.link.kind, side, record_id)
            for w in updates
            for side, record_id in codec.link_keys(w.given)
        }
        current = self.get_many(keys)
        lost = []
        for w in updates:
            w.old = None
            for side, record_id in codec.link_keys(w.given):
                found = current.get(LinkKey(w.given.connection_id, w.given.link.kind, side, record_id))
                if found is not None and found.lock_version == w.given.lock_version:
                    w.old = found
            if w.old is None:
                lost.append(w)
        return lost

    def _commit(self, writes: builtins.list[_Write]) -> builtins.list[_Write]:
        """Write every link that still can; returns the losers."""
        losers = self._load_old(writes)
        pending = []
        for w in writes:
            if w in losers:
                continue
            if w.actions() == 0:  # deleting a link that was never stored
                w.done = w.new
            else:
                pending.append(w)
        for round_ in range(MAX_ROUNDS):
            if not pending:
                return losers
            retry: builtins.list[_Write] = []
            contended = False
            for chunk in codec.pack([(w.actions(), w.counter) for w in pending]):
                batch = [pending[i] for i in chunk]
                failed, busy = self._transact(batch)
                if not failed and not busy:
                    continue
                contended |= busy
                losers.extend(w for w in batch if w in failed)
                retry.extend(w for w in batch if w not in failed)
            pending = retry
            if pending and contended:
                time.sleep(0.05 * (round_ + 1))
        raise RuntimeError(f"{len(pending)} link write(s) still contended after {MAX_ROUNDS} rounds")

    def _transact(self, batch: builtins.list[_Write]) -> tuple[set[_Write], bool]:
        """One TransactWriteItems; returns the writes whose condition failed and whether the
        transaction was cancelled by contention (then nothing failed for sure: try again)."""
        model = self.model
        deletes: builtins.list[_Write] = []
        puts: builtins.list[_Write] = []
        transaction = TransactWrite(connection=self.dynamodb.connection, client_request_token=str(uuid.uuid4()))
        counters: dict[tuple[str, str], int] = {}
        for w in batch:
            new_keys, old_keys = w.item_keys()
            pk = codec.connection_pk(w.given.connection_id)
            version = w.given.lock_version
            for sk in sorted(old_keys - new_keys):
                transaction.delete(model(pk, sk), condition=model.lock_version == version)
                deletes.append(w)
            if w.new is not None:
                for side, record_id in codec.link_keys(w.new):
                    sk = codec.link_sk(w.given.link.kind, side, record_id)
                    condition = model.lock_version == version if sk in old_keys else model.pk.does_not_exist()
                    transaction.save(self._item(w.new, pk, sk, side), condition=condition)
                    puts.append(w)
            counters[w.counter] = counters.get(w.counter, 0) + w.delta()
        for (connection_id, kind), delta in counters.items():
            if delta == 0:
                continue
            transaction.update(
                model(codec.connection_pk(connection_id), codec.count_sk(kind)), actions=[model.live.add(delta)]
            )
        try:
            with transaction:
                pass
        except TransactWriteError as error:
            return _cancelled(error, deletes + puts)  # pynamodb sends deletes, puts, then updates (counters)
        for w in batch:
            w.done = w.new
        return set(), False

    def _item(self, stored: StoredLink, pk: str, sk: str, side: str) -> LinkItem:
        link = stored.link
        kind = link.kind
        return self.model(
            pk,
            sk,
            link=json.dumps(link.to_dict(), separators=(",", ":")),
            lock_version=stored.lock_version,
            salesforce_id=link.salesforce_id,
            mailbox_id=link.mailbox_id,
            status=link.status,
            salesforce_key=f"{kind}#{link.salesforce_id}" if side == "salesforce" else None,
            mailbox_key=f"{stored.connection_id}#{kind}#{link.mailbox_id}" if side == "mailbox" else None,
            expires_at=stored.expires_at,
            claimed_at=stored.claimed_at,
        )


def _cancelled(error: TransactWriteError, owners: builtins.list[_Write]) -> tuple[set[_Write], bool]:
    """Which writes a cancelled transaction lost (``CancellationReasons`` are in the order of its
    actions, ``None`` for an action that did not fail), and whether contention cancelled it."""
    if error.cause_response_code != "TransactionCanceledException":
        raise error
    failed: set[_Write] = set()
    busy = False
    for index, reason in enumerate(error.cancellation_reasons):
        if reason is None:
            continue
        if reason.code == "ConditionalCheckFailed" and index < len(owners):
            failed.add(owners[index])
        elif reason.code in ("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"):
            busy = True
        else:
            raise error
    return failed, busy
