"""The one place that configures YAML.

Reading: spec files are parsed with ruamel.yaml's C parser into a node tree, so every
value keeps its line and column; the plain Python data is constructed from the same
nodes. Reading is strict: duplicate keys are errors, and alias expansion is bounded so
a "billion laughs" document is refused before anything walks the expanded data.

Writing: rendered objects are emitted as block-style YAML with a fixed indent and no
line folding, so the same objects always give the same bytes.

Editing (servegen promote): spec files are composed with ruamel.yaml's round-trip
composer, whose nodes keep their exact spans, styles and anchors; generator/specedit.py
splices new values into the original text at those spans.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from json.encoder import encode_basestring_ascii
from typing import Any

from ruamel.yaml import YAML, cyaml
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.loader import SafeLoader
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scanner import ScannerError

from generator.errors import cut

JsonPath = tuple[str | int, ...]

# A document may expand aliases to at most this many nodes: generous for real specs,
# far below what an alias bomb needs to exhaust memory.
MAX_EXPANDED_NODES = 100_000
# Collections may nest at most this deep. The C composer recurses per level, so a
# deeply nested flow collection is refused from the event stream before composing.
MAX_DEPTH = 200


class YamlSyntaxError(Exception):
    """A document could not be parsed; `line` and `col` are 1-based."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col


def _reader() -> YAML:
    yaml = YAML(typ="safe", pure=False)
    yaml.allow_duplicate_keys = False
    return yaml


_READER = _reader()


# ruamel.yaml.clib's parser (a dependency wherever CPython runs servegen).
_C_PARSER: Any = vars(cyaml).get("CParser")


@contextmanager
def _events(text: str, *, pure: bool = False) -> Iterator[Iterator[Any]]:
    """The C parser's events for `text` (ruamel's own parser's when `pure`), disposed of
    once read.

    The parser itself, not YAML.parse(): that builds a loader class (parser, constructor
    and resolver) on every call, half the cost of reading a spec, and keeps a record of
    every stream it read for the life of the YAML object (a long `watch` grows it). The
    events are the same objects either way. Either parser's get_event() gives None after
    the stream's end, so the events are read by iter() in C, with no Python frame (and
    no check_event() call) per event.
    """
    if pure or _C_PARSER is None:  # (no C library: ruamel's own parser)
        loader = _pure_loader(text)
        try:
            yield iter(loader.get_event, None)
        finally:
            loader.dispose()
        return
    parser = _C_PARSER(text)
    try:
        yield iter(parser.get_event, None)
    finally:
        parser.dispose()


def _round_trip() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    return yaml


_ROUND_TRIP = _round_trip()


def compose_round_trip(text: str) -> list[Node]:
    """Every document's node tree as written: spans (`start_mark.index`..`end_mark.index`),
    flow or block style, quote style and anchors. An alias is the anchored node itself.

    ruamel's round-trip scanner stops at a tab between two tokens of a line (`key:\tvalue`,
    `value\t# note`, a trailing tab), which YAML allows and the fast reader takes. Such a
    tab is read as the space it stands for, at the same index, so every span still points
    into `text`; tabs inside scalars are never met there, and a tab that indents a line
    stays refused, as the fast reader refuses it.
    """
    readable = text
    try:
        while True:  # each time round, one tab fewer
            try:
                return list(_ROUND_TRIP.compose_all(io.StringIO(readable)))
            except ScannerError as exc:
                at = _separating_tab(exc, readable)
                if at is None:
                    raise
                readable = readable[:at] + " " + readable[at + 1 :]
    except MarkedYAMLError as exc:
        raise _syntax_error(exc, text) from None
    except YAMLError as exc:
        raise YamlSyntaxError(str(exc).strip(), 1, 1) from None


def _separating_tab(exc: ScannerError, text: str) -> int | None:
    """Where the scanner stopped at a tab with something before it on its line."""
    mark = exc.problem_mark
    at = -1 if mark is None else mark.index
    if not 0 <= at < len(text) or text[at] != "\t" or "cannot start any token" not in str(exc):
        return None
    line_start = text.rfind("\n", 0, at) + 1
    return at if text[line_start:at].strip(" \t") else None


@dataclass(frozen=True)
class Document:
    """One YAML document: its data, and where each value is.

    The data comes from the fast event reader. Top-level keys keep their positions as
    they are read; the full node tree (positions of everything) is composed from the
    text only when a problem needs a deeper position, which valid specs never do.
    """

    index: int
    data: Any
    line: int
    text: str = field(repr=False)
    top: Mapping[str, tuple[Mark, Mark]] = field(default_factory=dict, repr=False)

    @cached_property
    def node(self) -> Node:
        try:
            nodes = list(_READER.compose_all(io.StringIO(self.text)))
        except ScannerError as exc:
            if not _flow_colon(exc):
                raise
            pure = YAML(typ="safe", pure=True)  # one of its own: see _pure_loader
            nodes = list(pure.compose_all(io.StringIO(self.text)))
        node: Node = nodes[self.index]
        return node

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at `path`, or of its deepest existing parent.

        With `key=True` a mapping entry points at its key rather than its value, which
        is where an editor should put the cursor for an unknown or misspelled field.
        """
        if len(path) == 1 and path[0] in self.top:
            return self.top[str(path[0])][0 if key else 1]
        if not path and not key:
            return self.line, 1
        node = self.node
        for step in path:
            child = _child(node, step, key=key and step == path[-1])
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1, int(node.start_mark.column) + 1

    def has(self, path: Sequence[str | int]) -> bool:
        """Whether every step of `path` exists in this document."""
        if len(path) == 1:
            return path[0] in self.top
        node: Node | None = self.node
        for step in path:
            node = _child(node, step, key=False) if node is not None else None
        return node is not None


def _child(node: Node, step: str | int, *, key: bool) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == str(step):
                return key_node if key else value_node
        return None
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        child: Node = node.value[step]
        return child
    if isinstance(node, SequenceNode) and isinstance(step, str):
        # A map written as a list of {name, value} (env vars): address an entry by name.
        for item in node.value:
            name = _child(item, "name", key=False)
            if isinstance(name, ScalarNode) and name.value == step:
                return _child(item, "value", key=False) or item
    return None


def load_documents(text: str) -> list[Document]:
    """Parse every document of a YAML stream, keeping positions.

    Raises YamlSyntaxError for malformed YAML, duplicate keys, unknown tags, and alias
    bombs or deep nesting (refused while reading events, before anything recurses).
    """
    try:
        builder, datas = _read(text)
    except MarkedYAMLError as exc:
        raise _syntax_error(exc, text) from None
    except YAMLError as exc:  # errors without a mark, e.g. a reader error
        raise YamlSyntaxError(str(exc).strip(), 1, 1) from None
    return [
        Document(index, data, builder.starts[index], text, builder.tops[index])
        for index, data in enumerate(datas)
    ]


def _pure_loader(text: str) -> SafeLoader:
    """ruamel's own parser, for the YAML 1.2 that libyaml as ruamel.yaml.clib bundles it
    does not read: a ':' inside a plain scalar in a flow collection (`spec: {url:
    hf://org/m}`, `{image: vllm/vllm-openai:v0.10.2}`), which it refuses as "found
    unexpected ':'". A loader of its own per text: a shared YAML object's parse() kept
    something of every stream it read (190 bytes a file, for the life of a `watch`)."""
    return SafeLoader(text)


def _read(text: str) -> tuple[_Builder, list[Any]]:
    """The documents of a user's text, from the C parser's events; from ruamel's own
    parser's when the C one stops at a ':' in a flow collection (see _pure_loader), which
    then also judges the rest of the text."""
    builder = _Builder(text, user_input=True)
    try:
        with _events(text) as events:
            return builder, builder.documents(events)
    except ScannerError as exc:
        if not _flow_colon(exc):
            raise
    builder = _Builder(text, user_input=True)
    with _events(text, pure=True) as events:
        return builder, builder.documents(events)


def _flow_colon(exc: ScannerError) -> bool:
    return str(exc.problem) == "found unexpected ':'"


def parse_rendered(text: str) -> list[Any]:
    """Parse text servegen itself rendered: plain data, no positions, no tags, no aliases.

    Built straight from the C parser's events: ruamel's constructor spends ~0.3 ms per
    object resolving tags, most of a render. Plain scalars resolve as YAML 1.2's core
    schema says; anything outside plain data is an error, since templates never make it.
    """
    try:
        with _events(text) as events:
            return _Builder(text, user_input=False).documents(events)
    except YAMLError as exc:
        raise YamlSyntaxError(f"rendered text is not valid YAML: {exc}", 1, 1) from None


_INT = re.compile(r"[-+]?[0-9]+")
# The core schema's octal and hex forms, exactly: int() alone would also take a sign,
# '_' and blanks (`0x-1`, `0o1_7`, `0x 1F`), which an editor's YAML 1.2 reads as text.
_OCT_HEX = re.compile(r"0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_CORE_WORDS: dict[str, Any] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}
# `[-+]?\.(inf|Inf|INF)` and `\.(nan|NaN|NAN)`, in these spellings only (`.iNf` is text).
_CORE_SPECIAL_FLOATS = frozenset(
    sign + "." + word for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")
) | {".nan", ".NaN", ".NAN"}


def resolve_plain(value: str) -> Any:
    """A plain (unquoted) scalar as YAML 1.2's core schema reads it."""
    if value in _CORE_WORDS:
        return _CORE_WORDS[value]
    if _INT.fullmatch(value):
        return int(value)
    if _OCT_HEX.fullmatch(value):
        number = int(value[2:], 8 if value[1] == "o" else 16)
        # Read whatever its length, but not written back in decimal past int()'s limit.
        limit = sys.get_int_max_str_digits()
        if limit and number.bit_length() > limit * 3.32:
            raise ValueError("more digits than an integer may have")
        return number
    if _FLOAT.fullmatch(value):
        return float(value)
    if value in _CORE_SPECIAL_FLOATS:
        return float(value.lower().replace(".", "", 1))
    return value


# Plain scalars recur (keys above all): each distinct one is resolved once.
_PLAIN_VALUES: dict[str, Any] = {}
_MAX_PLAIN_VALUES = 1 << 16


def _plain(raw: str) -> Any:
    try:
        return _PLAIN_VALUES[raw]
    except KeyError:
        pass
    value = resolve_plain(raw)
    if len(raw) <= 200:
        if len(_PLAIN_VALUES) >= _MAX_PLAIN_VALUES:
            _PLAIN_VALUES.clear()
        _PLAIN_VALUES[raw] = value
    return value


# Event classes by name, as the parser makes them (looked up once per class).
_EVENT_KINDS: dict[type, str] = {}


def _event_kind(kind: type) -> str:
    _EVENT_KINDS[kind] = kind.__name__
    return kind.__name__


Mark = tuple[int, int]


class _Builder:
    """Plain data from parser events: a stack of open collections, no recursion.

    For user input (`user_input=True`) it also allows anchors and aliases (expanding at
    most MAX_EXPANDED_NODES nodes per document), the standard tags, and records where
    each document starts and where its top-level keys and values are. Text servegen
    rendered may hold none of those.
    """

    def __init__(self, text: str, *, user_input: bool) -> None:
        self.text = text
        self.user_input = user_input
        self.starts: list[int] = []
        self.tops: list[dict[str, tuple[Mark, Mark]]] = []
        self._anchors: dict[str, tuple[Any, int]] = {}
        self._expanded = 0

    def documents(self, events: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        stack: list[Any] = []  # open dicts and lists
        keys: list[Any] = []  # for each open dict, the key awaiting its value (or _NO_KEY)
        sizes: list[int] = []  # nodes inside each open collection, for anchored values
        anchors: list[str | None] = []
        for event in events:
            kind = _EVENT_KINDS.get(type(event)) or _event_kind(type(event))
            if kind == "ScalarEvent":
                # The innermost loop of reading specs: an untagged, unanchored scalar
                # (nearly every one) is resolved and added here, without a call.
                if event.tag is None and not event.anchor:
                    raw = event.value
                    try:
                        value = raw if event.style else _plain(raw)
                    except ValueError:  # an integer longer than int() reads
                        raise self._error(event, _unreadable(raw, None)) from None
                else:
                    value = self._scalar(event)
                if len(stack) < 2:
                    self._record_top(event, stack, keys)
                top = stack[-1] if stack else None
                if top.__class__ is list:
                    sizes[-1] += 1
                    top.append(value)
                elif top.__class__ is dict and keys[-1] is not _NO_KEY:
                    sizes[-1] += 1
                    top[keys[-1]] = value
                    keys[-1] = _NO_KEY
                else:
                    self._add(value, 1, event, stack, keys, sizes, out)
            elif kind in ("MappingStartEvent", "SequenceStartEvent"):
                self._check_collection(event, len(stack))
                self._record_top(event, stack, keys)
                stack.append({} if kind == "MappingStartEvent" else [])
                keys.append(_NO_KEY)
                sizes.append(1)
                anchors.append(event.anchor)
            elif kind in ("MappingEndEvent", "SequenceEndEvent"):
                keys.pop()
                value, size, anchor = stack.pop(), sizes.pop(), anchors.pop()
                if anchor:
                    self._anchors[anchor] = (value, size)
                self._add(value, size, event, stack, keys, sizes, out)
            elif kind == "AliasEvent":
                value, size = self._alias(event)
                self._record_top(event, stack, keys)
                self._add(value, size, event, stack, keys, sizes, out)
            elif kind == "DocumentStartEvent":
                self.starts.append(int(event.start_mark.line) + 1)
                self.tops.append({})
                self._anchors, self._expanded = {}, 0
                first = len(out)
            elif kind == "DocumentEndEvent" and len(out) == first:
                out.append(None)  # an empty document
        return out

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag not in (None, "!") and not (self.user_input and tag in _STANDARD_TAGS):
            raise self._error(event, f"unsupported tag {tag!r}")
        try:
            if tag in (None, "!"):
                value = event.value if event.style or tag == "!" else resolve_plain(event.value)
            else:
                value = _STANDARD_TAGS[tag](event.value)
        except ValueError:  # `!!int x`, `!!float x`, or more digits than int() reads
            raise self._error(event, _unreadable(event.value, tag)) from None
        if event.anchor:
            self._need_user_input(event, "an anchor")
            self._anchors[event.anchor] = (value, 1)
        return value

    def _check_collection(self, event: Any, depth: int) -> None:
        if event.anchor:
            self._need_user_input(event, "an anchor")
        if event.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise self._error(event, f"unsupported tag {event.tag!r}")
        if depth >= MAX_DEPTH:
            raise self._error(
                event, f"document refused: nested too deeply (more than {MAX_DEPTH} levels)"
            )

    def _alias(self, event: Any) -> tuple[Any, int]:
        self._need_user_input(event, "an alias")
        if event.anchor not in self._anchors:
            raise self._error(event, f"unknown alias {event.anchor!r}")
        value, size = self._anchors[event.anchor]
        self._expanded += size
        if self._expanded > MAX_EXPANDED_NODES:
            raise self._error(
                event,
                f"document refused: aliases expand to too many nodes (limit {MAX_EXPANDED_NODES})",
            )
        return value, size

    def _need_user_input(self, event: Any, what: str) -> None:
        if not self.user_input:
            raise self._error(event, f"rendered text has {what}")

    def _record_top(self, event: Any, stack: list[Any], keys: list[Any]) -> None:
        """Positions of the root node and of its keys and values (all a valid spec needs)."""
        if not stack:
            self.starts[-1] = int(event.start_mark.line) + 1
        if not self.user_input or len(stack) != 1 or not isinstance(stack[0], dict):
            return
        mark = (int(event.start_mark.line) + 1, int(event.start_mark.column) + 1)
        if keys[0] is _NO_KEY:
            self._key_mark = mark
        elif isinstance(keys[0], str):
            self.tops[-1].setdefault(keys[0], (self._key_mark, mark))

    _key_mark: Mark = (1, 1)

    def _add(
        self,
        value: Any,
        size: int,
        event: Any,
        stack: list[Any],
        keys: list[Any],
        sizes: list[int],
        out: list[Any],
    ) -> None:
        if not stack:
            out.append(value)
            return
        sizes[-1] += size
        top = stack[-1]
        if isinstance(top, list):
            top.append(value)
        elif keys[-1] is not _NO_KEY:
            top[keys[-1]] = value
            keys[-1] = _NO_KEY
        elif isinstance(value, dict | list):
            raise self._error(event, "a mapping key must be a scalar")
        elif self.user_input and not isinstance(value, str):
            # Every key servegen reads is a string. A key YAML reads as a number, a
            # boolean or null is a mistake, and as a Python key it would collide with
            # another (1 and true are equal in a dict): say so at the key.
            raise self._error(event, _key_not_string(value, event))
        elif value in top:
            raise self._error(event, f"found duplicate key {value!r}")
        else:
            # Interned: the same few hundred keys recur in every object and spec.
            keys[-1] = sys.intern(value) if isinstance(value, str) else value

    @staticmethod
    def _error(event: Any, message: str) -> YamlSyntaxError:
        mark = event.start_mark
        return YamlSyntaxError(message, int(mark.line) + 1, int(mark.column) + 1)


_KEY_TYPES = {bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}


def _key_not_string(value: Any, event: Any) -> str:
    what = _KEY_TYPES.get(type(value), type(value).__name__)
    written = getattr(event, "value", None)  # the scalar as written; an alias has none
    if written is None:
        return f"a mapping key must be a string, not {what}"
    if not written:
        return 'a mapping key must be a string, not an empty key (null); write one, quoted: ""'
    shown = cut(written)
    return f'a mapping key must be a string: {shown} reads as {what}; quote it: "{shown}"'


def _unreadable(text: str, tag: str | None) -> str:
    shown = cut(text, 40)
    if tag is None or _INT.fullmatch(text):
        return (
            f"{shown} has {len(text)} characters: more than the {sys.get_int_max_str_digits()} "
            "digits an integer may have here (quote it if it is text)"
        )
    return f"{shown!r} cannot be read as the tag {tag.rpartition(':')[2]!r} says"


_STANDARD_TAGS: dict[str, Any] = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": lambda v: resolve_plain(v) if v.lower() in ("true", "false") else v,
    "tag:yaml.org,2002:null": lambda v: None,
}


_NO_KEY = object()


def _syntax_error(exc: MarkedYAMLError, text: str) -> YamlSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and "duplicate key" not in problem:
        problem = f"{problem} ({exc.context})"
    problem = problem.split("\n")[0].strip()
    if mark is None:
        return YamlSyntaxError(problem, 1, 1)
    line, col = int(mark.line) + 1, int(mark.column) + 1
    source_line = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    indent = source_line[: len(source_line) - len(source_line.lstrip(" \t"))]
    if "duplicate key" not in problem:
        if "\t" in indent and col <= len(indent) + 1:
            problem += "; tabs cannot indent YAML, use spaces"
        elif "\t" in source_line[col - 2 : col]:
            problem += "; write spaces instead of this tab"
    opened = exc.context_mark
    if opened is not None and exc.problem_mark is not None and opened.line != mark.line:
        problem += f"; the collection opened at line {opened.line + 1}, column {opened.column + 1}"
    return YamlSyntaxError(problem, line, col)


# --- writing -------------------------------------------------------------------------
#
# Rendered objects are plain JSON-like data, so they are written by a small emitter of
# block-style YAML rather than by ruamel's representer, which costs ~0.45 ms per object
# (most of a 1,000-spec render). Every string that is not unmistakably a plain word is
# written as a JSON string, which YAML reads back as exactly that string; the round
# trip through the parser is property-tested.

# Plain scalars: start with a letter, '_' or '/', and contain no character YAML gives
# meaning to (':', '#', ',', '[', quotes, spaces...).
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+=-]*$")
# Words YAML 1.1 (as Go's YAML libraries read it) or 1.2 would not read as strings.
_NOT_STRINGS = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"})
# JSON writes characters beyond U+FFFF as surrogate pairs; YAML wants one \U escape.
_SURROGATE_PAIR = re.compile(r"(\\\\)|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _astral(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1)  # an escaped backslash, not the start of an escape
    high, low = int(match.group(2), 16), int(match.group(3), 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


_JSON_WORDS = {None: "null", True: "true", False: "false"}


def json_scalar(value: Any) -> str:
    """`value` as JSON that YAML reads back unchanged, on one line.

    ASCII-only output escapes U+2028, U+0085 and the other characters YAML treats as
    line breaks; DEL is escaped too (YAML does not allow it raw), and characters outside
    the Basic Multilingual Plane use YAML's 8-digit escape.
    """
    # What json.dumps(value, ensure_ascii=True, allow_nan=False) writes, without its
    # per-call set-up for the common scalars (a tenth of writing YAML).
    if isinstance(value, str):
        text = encode_basestring_ascii(value)
    elif value is None or isinstance(value, bool):
        text = _JSON_WORDS[value]
    elif isinstance(value, int):
        text = int.__repr__(value)
    else:
        text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    text = text.replace("\x7f", "\\u007f")
    return _SURROGATE_PAIR.sub(_astral, text) if "\\ud" in text else text


def _string(value: str) -> str:
    if _PLAIN.fullmatch(value) and value.lower() not in _NOT_STRINGS:
        return value
    return json_scalar(value)


# Rendered objects repeat the same keys and short values thousands of times: each is
# judged once (a third of writing YAML). Long strings are rarely repeated: not kept.
_STRINGS: dict[str, str] = {}
_MAX_STRINGS = 1 << 16
_MAX_KEPT_LENGTH = 200


def _string_text(value: str) -> str:
    text = _STRINGS.get(value)
    if text is None:
        text = _string(value)
        if len(value) <= _MAX_KEPT_LENGTH:
            if len(_STRINGS) >= _MAX_STRINGS:
                _STRINGS.clear()
            _STRINGS[value] = text
    return text


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _string_text(value)
    if value is None or isinstance(value, bool | int):
        return json_scalar(value)
    if isinstance(value, float):
        text = json_scalar(value)
        # YAML 1.1 readers need a '.' to see a float ("1e-05" would be a string).
        return text if "." in text or "e" not in text else text.replace("e", ".0e", 1)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, got {key!r}")
    return _string_text(key)


# The writer is the innermost loop of a render (every line of 60,000 files at 10,000
# specs): one function per collection, with the scalar cases tested inline.


def _emit_mapping(value: dict[Any, Any], pad: str, out: list[str], first: str) -> None:
    """`value`'s entries at indent `pad`; the first line starts with `first` instead
    (`pad`, or a list item's `- ` at the parent's indent)."""
    strings = _STRINGS
    lead = first
    for key, item in value.items():
        head = lead + (strings.get(key) or _key(key)) + ":"
        lead = pad
        kind = item.__class__
        if kind is str:
            out.append(head + " " + (strings.get(item) or _string_text(item)) + "\n")
        elif kind is int:  # ports, replicas, sizes: what json_scalar() writes for them
            out.append(head + " " + int.__repr__(item) + "\n")
        elif kind is dict:
            if item:
                out.append(head + "\n")
                _emit_mapping(item, pad + "  ", out, pad + "  ")
            else:
                out.append(head + " {}\n")
        elif kind is list:
            if item:
                out.append(head + "\n")
                _emit_sequence(item, pad, out)  # kubectl style: list items at the key's indent
            else:
                out.append(head + " []\n")
        elif isinstance(item, dict) and item:  # subclasses: the general case
            out.append(head + "\n")
            _emit_mapping(item, pad + "  ", out, pad + "  ")
        elif isinstance(item, list) and item:
            out.append(head + "\n")
            _emit_sequence(item, pad, out)
        else:
            out.append(f"{head} {_inline(item)}\n")


def _emit_sequence(value: list[Any], pad: str, out: list[str]) -> None:
    strings = _STRINGS
    for item in value:
        kind = item.__class__
        if kind is str:
            out.append(pad + "- " + (strings.get(item) or _string_text(item)) + "\n")
        elif kind is int:
            out.append(pad + "- " + int.__repr__(item) + "\n")
        elif kind is dict:
            if item:
                _emit_mapping(item, pad + "  ", out, pad + "- ")
            else:
                out.append(pad + "- {}\n")
        elif kind is list:
            if item:
                out.append(pad + "-\n")
                _emit_sequence(item, pad + "  ", out)
            else:
                out.append(pad + "- []\n")
        elif isinstance(item, dict) and item:  # subclasses: the general case
            _emit_mapping(item, pad + "  ", out, pad + "- ")
        elif isinstance(item, list) and item:
            out.append(pad + "-\n")
            _emit_sequence(item, pad + "  ", out)
        else:
            out.append(f"{pad}- {_inline(item)}\n")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump_documents(objects: Sequence[Any]) -> str:
    """Serialise objects as a multi-document YAML stream, deterministically."""
    out: list[str] = []
    for index, obj in enumerate(objects):
        if index:
            out.append("---\n")
        if isinstance(obj, dict) and obj:
            _emit_mapping(obj, "", out, "")
        elif isinstance(obj, list) and obj:
            _emit_sequence(obj, "", out)
        else:
            out.append(_inline(obj) + "\n")
    return "".join(out)


def dump(obj: Any) -> str:
    return dump_documents([obj])


_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Sequence[str | int]) -> str:
    """Render a path the way users read it: `spec.adapters[0].name`, `envs["A.B"]`."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _SIMPLE_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step, ensure_ascii=False)}]"
    return out


# --- fragments spliced into user files (servegen promote) ----------------------------

# Plain scalars spliced into spec files (which only servegen's YAML 1.2 reader reads):
# no indicator YAML gives meaning to ('hf://org/model' may keep its ':' in block
# context only, so flow context gets the stricter set), and, checked separately, read
# back by the core schema as the same string (a commit SHA yes, `0123` or `true` no).
_PLAIN_BLOCK = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./@+=:-]*$")
_PLAIN_FLOW = _PLAIN


def _reads_back(value: str) -> bool:
    """Whether `value`, written plain, reads back as this very string."""
    try:
        return bool(resolve_plain(value) == value)
    except ValueError:  # digits no integer here may have: quoted, never plain
        return False


def scalar_text(value: Any, *, style: str | None = None, flow: bool = False) -> str:
    """One scalar as YAML text, in the quote style of the value it replaces when possible."""
    if not isinstance(value, str):
        return _scalar(value)
    plain = _PLAIN_FLOW if flow else _PLAIN_BLOCK
    readable = plain.fullmatch(value) and value.lower() not in _NOT_STRINGS
    if style is None and readable and _reads_back(value) and value[-1] != ":":
        return value
    if style == "'" and "\n" not in value and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return json_scalar(value)


def flow_text(value: Any) -> str:
    """A value on one line in flow style: `{name: sql, url: "hf://org/sql"}`."""
    if isinstance(value, dict):
        items = ", ".join(f"{scalar_text(k, flow=True)}: {flow_text(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow_text(item) for item in value) + "]"
    return scalar_text(value, flow=True)


def block_lines(value: Any) -> list[str]:
    """A mapping or sequence in block style (two-space indent), one line per entry."""
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{scalar_text(key)}:"
            if isinstance(item, dict | list) and item:
                out.append(head)
                out.extend("  " + line for line in block_lines(item))
            else:
                out.append(f"{head} {_fragment_inline(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                lines = block_lines(item)
                out.append("- " + lines[0])
                out.extend("  " + line for line in lines[1:])
            else:
                out.append(f"- {_fragment_inline(item)}")
    return out


def _fragment_inline(value: Any) -> str:
    return flow_text(value) if isinstance(value, dict | list) else scalar_text(value)
