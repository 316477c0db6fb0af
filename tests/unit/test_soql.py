"""SOQL literals from data: every escape the SOQL reference lists, wildcards, lists, dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from concord.adapters.soql import in_list, like, literal, quote


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("O'Brien", r"'O\'Brien'"),
        ("back\\slash", r"'back\\slash'"),
        ("\\'", r"'\\\''"),  # a backslash then a quote: neither may end the literal
        ("two\nlines\r\n", r"'two\nlines\r\n'"),
        ("tab\there", r"'tab\there'"),
        ("feed\f", r"'feed\f'"),
        ("bell\x07 backspace\x08 nul\x00 del\x7f", r"'bell\u0007 backspace\u0008 nul\u0000 del\u007f'"),
        ('say "hi"', "'say \"hi\"'"),
        ("50% of a_b", "'50% of a_b'"),  # wildcards are ordinary characters outside LIKE
        ("Zoë Ångström 東京 🙂", "'Zoë Ångström 東京 🙂'"),
        ("", "''"),
    ],
)
def test_quote(value: str, expected: str) -> None:
    assert quote(value) == expected


def test_an_injection_attempt_stays_inside_the_literal() -> None:
    hostile = "x' OR Name != '"

    quoted = quote(hostile)

    assert quoted == r"'x\' OR Name != \''"
    # every quote inside is escaped: the only unescaped quotes are the two delimiters
    body = quoted[1:-1].replace("\\\\", "").replace("\\'", "")
    assert "'" not in body


def test_quote_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError):
        quote(5)


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        ("50%", {"suffix": "%"}, r"'50\%%'"),
        ("a_b", {}, r"'a\_b'"),
        ("@example.com", {"prefix": "%"}, r"'%@example.com'"),
        ("it's 100%\\", {"prefix": "%", "suffix": "%"}, r"'%it\'s 100\%\\%'"),
        ("x' OR Name LIKE '%", {}, r"'x\' OR Name LIKE \'\%'"),
    ],
)
def test_like(value: str, options: dict[str, str], expected: str) -> None:
    assert like(value, **options) == expected


def test_like_wildcards_come_only_from_the_caller() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        like("x", suffix="' OR Id != '")


def test_in_list() -> None:
    assert in_list(["a@x.example", "o'neil@x.example", "a@x.example"]) == r"('a@x.example','o\'neil@x.example')"
    assert in_list(iter(["only"])) == "('only')"


def test_in_list_refuses_an_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        in_list([])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
        (date(2026, 2, 3), "2026-02-03"),
        (datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC), "2026-02-03T04:05:06Z"),
        (datetime(2026, 2, 3, 1, 0, tzinfo=timezone(timedelta(hours=-8))), "2026-02-03T09:00:00Z"),
        ("it's", r"'it\'s'"),
    ],
)
def test_literal(value: object, expected: str) -> None:
    assert literal(value) == expected


def test_literal_refuses_a_naive_datetime_and_non_numbers() -> None:
    with pytest.raises(ValueError, match="naive"):
        literal(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        literal(float("nan"))
    with pytest.raises(TypeError):
        literal(object())


def test_mixed_in_list() -> None:
    assert in_list([1, "a", None, date(2026, 1, 2)]) == "(1,'a',null,2026-01-02)"
