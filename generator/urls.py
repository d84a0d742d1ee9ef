"""What makes a URL usable by the service it names: one rule for every URL servegen writes
into manifests (servegen.yaml's `flux.url`, KubeAI endpoints, `telemetry.otlp_endpoint`)
or fetches (`crds --refresh`).

A URL is read as its readers read it: Go's net/url (go1.24 src/net/url/url.go,
`parseAuthority` and `validOptionalPort`: Flux's controllers, which clone `flux.url`, are
Go) and Python's `urllib.parse.urlsplit` (vLLM's OpenTelemetry exporters, which get the
OTLP endpoint; servegen's own fetch). Both take the host after the last '@' of the
authority and refuse a port that is not all digits; urlsplit also refuses one above
65535, and nothing listens on port 0. (servegen's own reading of the OTLP endpoint
called `.port` on such a URL and failed inside the render.) A password is refused for
another reason: the URL is written into the manifests as it is, in plaintext.

`AUTHORITY_PATTERN` and `CREDENTIALS_PATTERN` say the same for editors (the JSON Schemas),
in regular expressions that read the same in Python, Rust and ECMAScript, and
`url_problem()` applies those very patterns, so validate and an editor agree.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

_PORT_NUMBER = (
    r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)
# scheme://[user@]host[:port] followed by the path, query, fragment or nothing. A host is
# a name without the characters that end or split an authority, spaces and control
# characters (net/url refuses them; urlsplit drops tabs and line breaks, and reads the
# rest as part of the name), or a bracketed IPv6 address; an empty port (`host:`) is no
# port to both readers.
AUTHORITY_PATTERN = (
    r"^[^:/?#]+://([^/?#\x00-\x20\x7f]*@)?([^/?#@:\[\]\x00-\x20\x7f]+|\[[0-9A-Fa-f:.]+\])"
    rf"(:(0*{_PORT_NUMBER})?)?([/?#]|$)"
)
# A ':' before the last '@' of the authority: a password (urlsplit's `.password`).
CREDENTIALS_PATTERN = r"^[^:/?#]+://[^/?#]*:[^/?#]*@"

_AUTHORITY = re.compile(AUTHORITY_PATTERN)
_CREDENTIALS = re.compile(CREDENTIALS_PATTERN)
_BLANK_AUTHORITY = re.compile(r"^[^:/?#]+://[^/?#]*[\x00-\x20\x7f]")

CREDENTIALS_PROBLEM = "holds a password, which would be written into the manifests in plaintext"
_BRACKETS = "has a '[' or ']' that does not enclose an IPv6 address"


def url_problem(url: str) -> str | None:
    """Why `url` cannot reach a service, worded to follow the quoted URL; None when it can.

    Only the scheme separator is assumed present (each field's own pattern requires its
    schemes); a password is reported without the URL, which would show it.
    """
    if _CREDENTIALS.match(url):
        return CREDENTIALS_PROBLEM
    if _BLANK_AUTHORITY.match(url):
        return "has a space or a control character before its path"
    try:
        parts = urlsplit(url)
    except ValueError:  # urlsplit checks what a '[' ... ']' encloses
        return _BRACKETS
    authority = parts.netloc.rpartition("@")[2]
    if authority.startswith("["):  # urlsplit found its ']'
        _, _, after = authority.partition("]")
        if after and not after.startswith(":"):
            return _BRACKETS
        port = after[1:]
    else:
        host, _, port = authority.partition(":")
        if "[" in host or "]" in host:
            return _BRACKETS
    if not parts.hostname:
        return "has no host"
    if port and not _valid_port(parts):  # as written: urlsplit's `.port` raises on it
        return f"has the port {port!r}: a port is a number from 1 to 65535"
    if not _AUTHORITY.match(url):
        return "is not a URL of the form scheme://host[:port][/path]"
    return None


def _valid_port(parts: SplitResult) -> bool:
    try:
        return bool(parts.port)  # None (no digits) cannot be here; 0 is no port
    except ValueError:
        return False


def credential_places(url: str) -> str:
    """The parts of `url` a credential would be put in: its user name, query and fragment
    (not its host or path, which name things: a repository may be `sk-learn-...`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return " ".join((parts.netloc.rpartition("@")[0], parts.query, parts.fragment))


def redacted(text: str) -> str:
    """`text` with the password of a URL in it, if any, shown as `***` (for messages that
    quote a value: one refused for its scheme may still hold a password)."""
    return _CREDENTIALS_SPAN.sub(r"\1***@", text)


_CREDENTIALS_SPAN = re.compile(r"^([^:/?#]+://[^/?#:]*:)[^/?#]*@")
