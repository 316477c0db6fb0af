"""The connectors' redactor: what it keeps secret, and that a warm container does not grow it without end."""

from __future__ import annotations

from concord.adapters.http import REDACTED, Redactor


def test_long_lived_secrets_and_credential_shapes_are_redacted() -> None:
    redact = Redactor()
    redact.add("CANARY-client-secret-1", None, "short")
    text = redact('client secret CANARY-client-secret-1, header "Authorization: Bearer eyJabc.def", short')
    assert "CANARY" not in text and "eyJabc" not in text
    assert text.count(REDACTED) == 2 and text.endswith("short")  # values under 6 characters stay


def test_short_lived_secrets_are_kept_only_while_recent() -> None:
    # GIVEN a redactor that remembers the last three tokens, and one key for good
    redact = Redactor(recent_limit=3)
    redact.add("CANARY-private-key")
    # WHEN a warm container mints ten tokens
    tokens = [f"CANARY-token-{n:04d}" for n in range(10)]
    for token in tokens:
        redact.add_short_lived(token)
    # THEN the latest three and the key are still redacted, and older tokens are forgotten
    assert redact(" ".join(tokens[-3:] + ["CANARY-private-key"])) == " ".join([REDACTED] * 4)
    assert redact(tokens[0]) == tokens[0]


def test_seeing_a_short_lived_secret_again_keeps_it() -> None:
    redact = Redactor(recent_limit=2)
    redact.add_short_lived("CANARY-token-a", "CANARY-token-b")
    redact.add_short_lived("CANARY-token-a", "CANARY-token-c")  # a is in use again, b is now oldest
    assert redact("CANARY-token-a") == REDACTED
    assert redact("CANARY-token-b") == "CANARY-token-b"
