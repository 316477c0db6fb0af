"""What the sandbox pushes: Outbound Messages (SOAP, retried until acknowledged, with the notification
faults) and change events shaped as Event Relay delivers them to EventBridge."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from defusedxml import ElementTree

from local.sandboxes.salesforce import OutboundMessage
from tests.integration.connectors.salesforce.conftest import ACK, KeyPair, raw_http, session_token
from tests.support.receiver import Received, Receiver

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox

OM = "{http://soap.sforce.com/2005/09/outbound}"
SF = "{urn:sobject.enterprise.soap.sforce.com}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"


def ack(_: Received) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/xml"}, ACK


def _notifications(received: Received) -> Element:
    root = ElementTree.fromstring(received.body)
    body = root.find(SOAP_BODY)
    assert body is not None
    notifications: Element | None = body.find(f"{OM}notifications")
    assert notifications is not None
    return notifications


def _outbound(sandbox: SalesforceSandbox, receiver: Receiver, **options: Any) -> None:
    fields = options.pop("fields", ("Id", "LastName", "Email", "LastModifiedDate", "Phone"))
    sandbox.add_outbound_message(OutboundMessage("Contact", f"{receiver.url}/salesforce/om", fields, **options))


def test_outbound_message_envelope(client: SalesforceClient, salesforce: SalesforceSandbox, key_pair: KeyPair) -> None:
    with Receiver(ack) as receiver:
        _outbound(salesforce, receiver, include_session_id=True)
        (created,) = client.create("Contact", [{"LastName": "Noether", "Email": "emmy@math.example"}])
        (got,) = receiver.wait_for(1)
        assert salesforce.pusher.wait_idle()

    assert got.path == "/salesforce/om"
    assert got.headers["content-type"].startswith("text/xml")
    assert got.headers["soapaction"] == '""'
    notifications = _notifications(got)
    assert notifications.findtext(f"{OM}OrganizationId") == salesforce.org_id
    assert len(salesforce.org_id) == 18
    assert (notifications.findtext(f"{OM}ActionId") or "").startswith("04k")
    assert notifications.findtext(f"{OM}EnterpriseUrl") == f"{salesforce.url}/services/Soap/c/60.0/00D5g000004SEED"
    assert notifications.findtext(f"{OM}PartnerUrl") == f"{salesforce.url}/services/Soap/u/60.0/00D5g000004SEED"
    (notification,) = notifications.findall(f"{OM}Notification")
    assert (notification.findtext(f"{OM}Id") or "").startswith("04l")
    sobject = notification.find(f"{OM}sObject")
    assert sobject is not None
    assert sobject.get(XSI_TYPE) == "sf:Contact"
    assert sobject.findtext(f"{SF}Id") == created.id
    assert sobject.findtext(f"{SF}LastName") == "Noether"
    assert sobject.findtext(f"{SF}Email") == "emmy@math.example"
    assert (sobject.findtext(f"{SF}LastModifiedDate") or "").endswith("Z")
    assert sobject.find(f"{SF}Phone") is None  # null fields are left out
    # The SessionId is a live session of the integration user, as in Salesforce
    session = notifications.findtext(f"{OM}SessionId") or ""
    with raw_http() as http:
        answer = http.get(
            f"{salesforce.url}/services/data/v60.0/sobjects/Contact/{created.id}",
            headers={"Authorization": f"Bearer {session}"},
        )
    assert answer.status_code == 200
    assert session != session_token(salesforce, key_pair)


def test_session_id_is_nil_unless_asked_for(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    with Receiver(ack) as receiver:
        _outbound(salesforce, receiver)
        client.create("Contact", [{"LastName": "Quiet"}])
        (got,) = receiver.wait_for(1)

    session = _notifications(got).find(f"{OM}SessionId")
    assert session is not None
    assert session.get(XSI_NIL) == "true"
    assert not session.text


def test_updates_notify_deletes_do_not(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    contact_id = salesforce.live_records("Contact")[0]["Id"]
    with Receiver(ack) as receiver:
        _outbound(salesforce, receiver)
        client.update("Contact", [{"Id": contact_id, "Phone": "+1 555 0100"}])
        client.delete([contact_id])
        (got,) = receiver.wait_for(1)
        assert salesforce.pusher.wait_idle()
        assert len(receiver.received) == 1

    sobject = _notifications(got).find(f"{OM}Notification/{OM}sObject")
    assert sobject is not None
    assert sobject.findtext(f"{SF}Phone") == "+1 555 0100"


def test_notifications_are_batched_by_100(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    with Receiver(ack) as receiver:
        _outbound(salesforce, receiver)
        client.create("Contact", [{"LastName": f"Batch{i}"} for i in range(150)])
        messages = receiver.wait_for(2)
        assert salesforce.pusher.wait_idle()

    counts = sorted(len(_notifications(m).findall(f"{OM}Notification")) for m in messages)
    assert counts == [50, 100]
    ids = [n.findtext(f"{OM}Id") for m in messages for n in _notifications(m).findall(f"{OM}Notification")]
    assert len(set(ids)) == 150


def test_retried_until_acknowledged(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    answers = iter(
        [
            (500, {}, b"boom"),
            (200, {"Content-Type": "text/xml"}, ACK.replace(b"true", b"false")),
            (200, {"Content-Type": "text/xml"}, b"<not-soap/>"),
        ]
    )
    lock = threading.Lock()

    def flaky(received: Received) -> tuple[int, dict[str, str], bytes]:
        with lock:
            return next(answers, ack(received))

    with Receiver(flaky) as receiver:
        _outbound(salesforce, receiver)
        client.create("Contact", [{"LastName": "Persistent"}])
        messages = receiver.wait_for(4)
        assert salesforce.pusher.wait_idle()

    assert len({m.body for m in messages}) == 1  # the same message each time
    assert len(salesforce.pusher.delivered) == 1
    assert salesforce.pusher.delivered[0].attempts == 4


def test_dropped_duplicated_and_reordered_notifications(
    client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    def last_names(messages: list[Received]) -> list[str | None]:
        return [_notifications(m).findtext(f"{OM}Notification/{OM}sObject/{SF}LastName") for m in messages]

    with Receiver(ack) as receiver:
        _outbound(salesforce, receiver)
        with raw_http() as http:
            http.post(f"{salesforce.url}/_sandbox/faults", json={"notifications": {"drop": 1}})
        client.create("Contact", [{"LastName": "Dropped"}])
        client.create("Contact", [{"LastName": "Kept"}])
        receiver.wait_for(1)
        assert salesforce.pusher.wait_idle()
        assert last_names(receiver.received) == ["Kept"]

        salesforce.faults.notifications(duplicate=1)
        client.create("Contact", [{"LastName": "Twice"}])
        receiver.wait_for(3)
        assert salesforce.pusher.wait_idle()
        assert last_names(receiver.received[1:]) == ["Twice", "Twice"]

        salesforce.faults.notifications(reorder=1)
        client.create("Contact", [{"LastName": "First"}])
        client.create("Contact", [{"LastName": "Second"}])
        receiver.wait_for(5)
        assert salesforce.pusher.wait_idle()
        assert last_names(receiver.received[3:]) == ["Second", "First"]


# ------------------------------------------------------------------------------------- change events


def _payloads(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["detail"]["payload"] for e in events]


def test_create_event_is_an_eventbridge_event(
    client: SalesforceClient, salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    (created,) = client.create(
        "Contact", [{"FirstName": "Emmy", "LastName": "Noether", "MailingCity": "Erlangen", "Email": "e@m.example"}]
    )

    (event,) = cdc_events
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert event["detail-type"] == "ContactChangeEvent"
    assert event["source"] == f"aws.partner/salesforce.com/{salesforce.org_id}/{salesforce.channel_id}"
    payload = event["detail"]["payload"]
    header = payload["ChangeEventHeader"]
    assert header["entityName"] == "Contact"
    assert header["recordIds"] == [created.id]
    assert header["changeType"] == "CREATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/60.0;client=concord"
    assert header["commitUser"] == salesforce.user_id
    assert isinstance(header["commitTimestamp"], int)
    assert header["sequenceNumber"] == 1
    assert payload["Name"] == {"Salutation": None, "FirstName": "Emmy", "LastName": "Noether"}
    assert payload["MailingAddress"]["City"] == "Erlangen"
    assert payload["Email"] == "e@m.example"
    assert isinstance(payload["CreatedDate"], int)  # epoch milliseconds
    assert "Phone" in payload
    assert payload["Phone"] is None


def test_update_event_names_changes_and_nulls_the_rest(
    client: SalesforceClient, salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    contact = next(r for r in salesforce.live_records("Contact") if r["LastName"] == "Lovelace")

    client.update("Contact", [{"Id": contact["Id"], "LastName": "King", "MailingCity": "London", "Phone": None}])

    (payload,) = _payloads(cdc_events)
    header = payload["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert sorted(header["changedFields"]) == sorted(
        ["Name.LastName", "MailingAddress.City", "Phone", "LastModifiedDate"]
    )
    assert header["nulledFields"] == ["Phone"]
    assert payload["Name"] == {"Salutation": None, "FirstName": None, "LastName": "King"}
    assert payload["MailingAddress"]["City"] == "London"
    assert payload["Email"] is None  # unchanged: null, not its value
    assert payload["Phone"] is None
    assert isinstance(payload["LastModifiedDate"], int)


def test_delete_and_ui_changes(
    client: SalesforceClient, salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    lead_id = salesforce.live_records("Lead")[0]["Id"]

    salesforce.change(lead_id, Title="Chief Scientist")
    client.delete([lead_id])

    update, delete = _payloads(cdc_events)
    assert update["ChangeEventHeader"]["changeOrigin"] == ""  # not made through an API
    assert update["ChangeEventHeader"]["changedFields"] == ["Title", "LastModifiedDate"]
    assert delete["ChangeEventHeader"]["changeType"] == "DELETE"
    assert delete["ChangeEventHeader"]["recordIds"] == [lead_id]
    assert delete["Company"] is None


def test_one_call_is_one_transaction(client: SalesforceClient, cdc_events: list[dict[str, Any]]) -> None:
    client.create("Contact", [{"LastName": "One"}, {"LastName": "Two"}, {"LastName": "Three"}])

    headers = [p["ChangeEventHeader"] for p in _payloads(cdc_events)]
    assert len({h["transactionKey"] for h in headers}) == 1
    assert [h["sequenceNumber"] for h in headers] == [1, 2, 3]
    assert len({h["commitNumber"] for h in headers}) == 1


def test_rolled_back_writes_emit_nothing(
    salesforce: SalesforceSandbox, key_pair: KeyPair, cdc_events: list[dict[str, Any]]
) -> None:
    token = session_token(salesforce, key_pair)
    records = [{"attributes": {"type": "Contact"}, "LastName": "Fine"}, {"attributes": {"type": "Contact"}}]
    with raw_http() as http:
        answer = http.post(
            f"{salesforce.url}/services/data/v60.0/composite/sobjects",
            json={"allOrNone": True, "records": records},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert [r["errors"][0]["statusCode"] for r in answer.json()] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert cdc_events == []
    assert not [r for r in salesforce.live_records("Contact") if r["LastName"] == "Fine"]


def test_gap_events(salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]) -> None:
    contact_id = salesforce.live_records("Contact")[0]["Id"]

    salesforce.emit_gap("Contact", "GAP_UPDATE", [contact_id])
    with raw_http() as http:
        http.post(f"{salesforce.url}/_sandbox/cdc/gap", json={"entity": "Event", "changeType": "GAP_OVERFLOW"})

    gap, overflow = _payloads(cdc_events)
    assert gap["ChangeEventHeader"]["changeType"] == "GAP_UPDATE"
    assert gap["ChangeEventHeader"]["recordIds"] == [contact_id]
    assert gap["ChangeEventHeader"]["changeOrigin"] == ""
    assert all(v is None for k, v in gap.items() if k != "ChangeEventHeader")
    assert overflow["ChangeEventHeader"]["changeType"] == "GAP_OVERFLOW"
    assert overflow["ChangeEventHeader"]["recordIds"] == ["000000000000000AAA"]
    assert cdc_events[1]["detail-type"] == "EventChangeEvent"


def test_change_events_obey_the_drop_duplicate_and_reorder_switches(
    salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    contact = salesforce.live_records("Contact")[0]
    cdc_events.clear()

    def titles() -> list[str]:
        return [e["detail"]["payload"]["Title"] for e in cdc_events]

    salesforce.change_event_faults.notifications(drop=1)
    salesforce.change(contact["Id"], Title="dropped")
    salesforce.change(contact["Id"], Title="kept")
    assert titles() == ["kept"]

    cdc_events.clear()
    salesforce.change_event_faults.notifications(duplicate=1)
    salesforce.change(contact["Id"], Title="twice")
    assert titles() == ["twice", "twice"]

    cdc_events.clear()
    salesforce.change_event_faults.notifications(reorder=1)
    salesforce.change(contact["Id"], Title="first")
    salesforce.change(contact["Id"], Title="second")
    assert titles() == ["second", "first"]
