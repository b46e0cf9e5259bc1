"""redis_autoheal.logs: what a request may put into a log line or an audit field."""

from __future__ import annotations

import pytest

from redis_autoheal.logs import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/api/services/redis/health", "/api/services/redis/health"),
        ("/a\r\nFORGED", "/a\\r\\nFORGED"),
        ("/a\x00\x1b[31m\x7f\x85", "/a\\x00\\x1b[31m\\x7f\\x85"),
        ("/a\u2028b\u2029c\u202ed", "/a\\u2028b\\u2029c\\u202ed"),  # line breaks, bidi override
        ("/a\udcffb", "/a\\udcffb"),  # a byte that was not UTF-8
        ("/a\\r", "/a\\\\r"),  # a real backslash cannot pass for an escape
        ("/é/ü", "/é/ü"),
    ],
)
def test_printable_escapes_every_control_character(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_bounds_its_output_and_says_so() -> None:
    shown = printable("/" + "x" * 8000, 256)
    assert shown.startswith("/xxx")
    assert shown.endswith("...[+7745 chars]")
    assert len(shown) <= 256 + len("...[+7745 chars]")
    escaped = printable("\n" * 8000, 256)  # escaping does not let it grow past the bound
    assert len(escaped) <= 256 + len("...[+7872 chars]")
    assert escaped.endswith("...[+7872 chars]")
