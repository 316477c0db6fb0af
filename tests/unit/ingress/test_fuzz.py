"""Hypothesis: no input to any parser makes a webhook answer 5xx (or raise)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concord.ingress.apps.google_webhook import GoogleWebhook
from concord.ingress.apps.graph_webhook import GraphWebhook
from concord.ingress.apps.salesforce_events import SalesforceEvents
from concord.ingress.apps.salesforce_webhook import SalesforceWebhook
from tests.support.events import load_event
from tests.unit.ingress import helpers
from tests.unit.ingress.helpers import CONTEXT, SigningKey, fake_deps, gmail_body, graph_batch, outbound_message

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = SigningKey()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _mutate(seed: str) -> st.SearchStrategy[str]:
    """Bodies near a valid one (cut, spliced, characters replaced) and arbitrary text."""
    return st.one_of(
        st.text(max_size=400),
        st.builds(lambda cut: seed[:cut], st.integers(0, len(seed))),
        st.builds(lambda at, junk: seed[:at] + junk + seed[at:], st.integers(0, len(seed)), st.text(max_size=30)),
        st.builds(lambda at, n: seed[:at] + seed[at + n :], st.integers(0, len(seed)), st.integers(1, 40)),
    )


def _assert_4xx_or_2xx(answer: dict[str, Any]) -> None:
    assert answer["statusCode"] < 500, answer


SF = SalesforceWebhook(helpers.settings(), fake_deps())
GRAPH = GraphWebhook(helpers.settings(), fake_deps())
GOOGLE = GoogleWebhook(helpers.settings(), fake_deps(), keys=KEY)
CDC = SalesforceEvents(helpers.settings(), fake_deps())
TOKEN = KEY.token()


@FUZZ
@given(_mutate(outbound_message(3)))
def test_outbound_message_parser(body: str) -> None:
    event = load_event("salesforce_webhook/outbound_message")
    event["body"] = body
    _assert_4xx_or_2xx(SF.resolve(event, CONTEXT))


@FUZZ
@given(_mutate(graph_batch(2)) | JSON.map(lambda doc: __import__("json").dumps({"value": [doc]})))
def test_graph_parser(body: str) -> None:
    event = load_event("graph_webhook/notifications")
    event["body"] = body
    _assert_4xx_or_2xx(GRAPH.resolve(event, CONTEXT))


@FUZZ
@given(_mutate(gmail_body()), st.sampled_from([TOKEN, "Bearer", "", "Basic x", TOKEN[:-5]]) | st.text(max_size=60))
def test_gmail_parser(body: str, token: str) -> None:
    event = load_event("google_webhook/gmail_push")
    event["body"] = body
    event["headers"]["Authorization"] = f"Bearer {token}" if token is TOKEN else token
    _assert_4xx_or_2xx(GOOGLE.resolve(event, CONTEXT))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "X-Goog-Channel-ID",
                "X-Goog-Channel-Token",
                "X-Goog-Resource-State",
                "X-Goog-Message-Number",
                "X-Goog-Resource-ID",
            ]
        ),
        st.text(max_size=40),
    )
)
def test_calendar_headers(headers: dict[str, str]) -> None:
    event = load_event("google_webhook/calendar_notification")
    event["headers"].update(headers)
    _assert_4xx_or_2xx(GOOGLE.resolve(event, CONTEXT))


@FUZZ
@given(JSON, st.sampled_from(["ChangeEventHeader", "detail", "payload", "source", "id"]))
def test_change_event_parser(junk: Any, where: str) -> None:
    event = load_event("salesforce_events/contact_change_event")
    if where == "ChangeEventHeader":
        event["detail"]["payload"]["ChangeEventHeader"] = junk
    elif where == "payload":
        event["detail"]["payload"] = junk
    else:
        event[where] = junk
    assert CDC.handle(event, CONTEXT)["statusCode"] < 500
