"""One rule for the URLs servegen writes out or fetches: as Go's net/url and Python's
urlsplit read them, with no password, and said the same way to editors."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.urls import (
    AUTHORITY_PATTERN,
    CREDENTIALS_PATTERN,
    CREDENTIALS_PROBLEM,
    credential_places,
    redacted,
    url_problem,
)


@pytest.mark.parametrize(
    "url",
    ["http://otel-collector.observability.svc:4317", "grpc://otel:4317", "https://github.com/o/r",
     "ssh://git@github.com/example-org/llm-serving", "http://[::1]:4318/v1/traces",
     "http://kubeai.kubeai.svc.cluster.local/openai/v1", "http://h:65535", "http://h:1",
     "http://h:04318", "http://h:/x", "http://h?q=1", "http://h#f", "http://user@h:80",
     "http://a@b@h/", "https://[2001:db8::1]/x"],
)  # fmt: skip
def test_a_usable_url_has_no_problem(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://otel:431v7", "has the port '431v7': a port is a number from 1 to 65535"),
        ("http://otel:43''17", "has the port \"43''17\": a port is a number from 1 to 65535"),
        ("http://otel:65536", "has the port '65536': a port is a number from 1 to 65535"),
        ("http://otel:0", "has the port '0': a port is a number from 1 to 65535"),
        ("http://otel:000", "has the port '000': a port is a number from 1 to 65535"),
        ("http://otel:-1", "has the port '-1': a port is a number from 1 to 65535"),
        (
            "http://otel:\u0664\u0663\u0661\u0667",
            "has the port '\u0664\u0663\u0661\u0667': a port is a number from 1 to 65535",
        ),
        ("http://otel:1:2", "has the port '1:2': a port is a number from 1 to 65535"),
        ("http://[::1]x/", "has a '[' or ']' that does not enclose an IPv6 address"),
        ("http://", "has no host"),
        ("http:///openai/v1", "has no host"),
        ("http://user@:80/", "has no host"),
        ("http://[::1/x", "has a '[' or ']' that does not enclose an IPv6 address"),
        ("http://h]/x", "has a '[' or ']' that does not enclose an IPv6 address"),
        ("http://[1.2.3.4]/", "has a '[' or ']' that does not enclose an IPv6 address"),
        ("http://a[::1]b/", "has a '[' or ']' that does not enclose an IPv6 address"),
        # urlsplit drops tabs and line breaks anywhere (Python 3.11 _UNSAFE_URL_BYTES_TO_REMOVE)
        # and would read port 12; Go refuses the control character.
        ("http://h:1\t2/", "has a space or a control character before its path"),
        ("https://git hub.com/o/r", "has a space or a control character before its path"),
        ("https://bot @github.com/o/r", "has a space or a control character before its path"),
        ("https://bot:s3cret@github.com/o/r", CREDENTIALS_PROBLEM),
        ("https://bot:@github.com/o/r", CREDENTIALS_PROBLEM),
        ("https://a:b@c@github.com/o/r", CREDENTIALS_PROBLEM),
        ("http://u:p@h:12a/", CREDENTIALS_PROBLEM),  # said first: that message shows no URL
    ],
)
def test_a_url_no_service_can_use_is_refused_saying_why(url: str, problem: str) -> None:
    assert url_problem(url) == problem


@pytest.mark.parametrize(
    ("url", "places"),
    [
        ("https://github.com/org/sk-learn-examples-for-the-team", "  "),
        ("https://ghp_x@github.com/o/r?token=t#f", "ghp_x token=t f"),
        ("https://a:b@c@h/p", "a:b@c  "),
        ("http://[::1/x", ""),
    ],
)
def test_credentials_are_looked_for_where_a_url_carries_them(url: str, places: str) -> None:
    """The user name, query and fragment; a host or path names things."""
    assert credential_places(url) == places


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ftp://u:pw@x:1/a", "ftp://u:***@x:1/a"),
        ("ftp://a:b@c@d/e", "ftp://a:***@d/e"),  # urlsplit's password is b@c
        ("ftp://u@x/a", "ftp://u@x/a"),
        ("ftp://h:1/p@q", "ftp://h:1/p@q"),
        ("not:a@url", "not:a@url"),
    ],
)
def test_a_quoted_url_shows_no_password(text: str, shown: str) -> None:
    assert redacted(text) == shown


# --- the schema patterns say what url_problem() says -------------------------------------


@cache
def _editor() -> Any:
    """The rule as the JSON Schemas carry it, judged with ECMAScript regexes."""
    schema = {"allOf": [{"pattern": AUTHORITY_PATTERN}, {"not": {"pattern": CREDENTIALS_PATTERN}}]}
    return jsonschema_rs.Draft7Validator(schema)


URLISH = st.text(alphabet="ab.-_%~:@[]/?#019x\\ \t", max_size=14)


@settings(max_examples=800, deadline=None)
@given(scheme=st.sampled_from(["http://", "https://", "grpc://", "ssh://"]), rest=URLISH)
def test_an_editor_marks_exactly_what_validate_refuses(scheme: str, rest: str) -> None:
    """Either way round, but for what urlsplit alone knows: whether the brackets enclose a
    real IPv6 address (validate refuses more there, never less)."""
    url = scheme + rest
    refused = url_problem(url) is not None
    marked = not _editor().is_valid(url)
    if marked:
        assert refused, url
    if refused and not marked:
        assert url_problem(url) == "has a '[' or ']' that does not enclose an IPv6 address", url


@pytest.mark.parametrize(
    ("url", "marked"),
    [("http://h:4317", False), ("http://h:4317x", True), ("http://h:99999", True),
     ("http://h:0", True), ("http://[::1]:1", False), ("http://u:p@h", True), ("http://u@h", False),
     ("http://", True), ("http://h:", False)],
)  # fmt: skip
def test_the_editor_rule_on_known_cases(url: str, marked: bool) -> None:
    """The property above, pinned to cases whose answer is known."""
    assert (not _editor().is_valid(url)) is marked
    assert (url_problem(url) is not None) is marked
