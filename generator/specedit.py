"""Change one value in a spec file and nothing else: comments, key order, quoting, flow
or block style, anchors and the other documents keep their exact bytes.

The file is composed with ruamel.yaml's round-trip composer (generator/yamlio.py), whose
nodes know their exact spans. A new value is spliced over the old one's span; a missing
key is inserted after the last entry of the mapping that should hold it, in that
mapping's style. A whole round-trip dump is not used: it re-indents and re-spaces parts
of the file nobody asked to change. Every edit is checked by reading the result back:
the documents must equal the old ones with exactly that value changed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from generator.errors import ServegenError
from generator.yamlio import (
    JsonPath,
    YamlSyntaxError,
    block_lines,
    compose_round_trip,
    flow_text,
    format_path,
    load_documents,
    resolve_plain,
    scalar_text,
)


class EditError(ServegenError):
    """A value cannot be changed without changing something else (an anchor, say)."""


@dataclass(frozen=True)
class _Splice:
    start: int
    end: int
    text: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.text + text[self.end :]


def set_value(text: str, document: int, path: JsonPath, value: Any) -> str:
    """`text` with `path` of document `document` set to `value` (keys created as needed)."""
    root = _documents(text)[document]
    shared = _shared(root)
    node, key, done, flow = root, None, 0, False
    for step in path:
        _refuse_shared(node, shared, path[:done])
        found = _entry(node, step)
        if found is None:
            break
        flow = flow or bool(getattr(node, "flow_style", False))
        (key, node), done = found, done + 1
    if done == len(path):
        _refuse_shared(node, shared, path)
        splices = list(_replace(text, node, value, flow))
    else:
        splices = [_insert(text, node, key, path[done:], value)]
    new = _apply(text, splices)
    _verify(text, new, document, lambda data: _assign(data, path, value), path)
    return new


def remove_key(text: str, document: int, path: JsonPath) -> str:
    """`text` without the entry at `path`; a mapping left empty is written `{}`."""
    root = _documents(text)[document]
    shared = _shared(root)
    node = root
    for done, step in enumerate(path[:-1]):
        _refuse_shared(node, shared, path[:done])
        child = _value(node, step)
        if child is None:
            return text
        node = child
    _refuse_shared(node, shared, path[:-1])
    if not isinstance(node, MappingNode):
        return text
    entries = [(k, v) for k, v in node.value if isinstance(k, ScalarNode)]
    index = next((i for i, (k, _) in enumerate(entries) if k.value == path[-1]), None)
    if index is None:
        return text
    if len(entries) == 1 and node.flow_style:
        splice = _Splice(node.start_mark.index, _end(node), "{}")
    elif len(entries) == 1:
        # `spec:` + its only entry's lines become `spec: {}`; comments stay where they are.
        splices = _emptied_block(text, node)
        if splices is None:
            return text  # a shape not handled here: the caller refuses, nothing changes
        new = _apply(text, splices)
        _verify(text, new, document, lambda data: _delete(data, path), path)
        return new
    elif node.flow_style:
        splice = _remove_flow_entry(text, entries, index)
    else:
        key, item = entries[index]
        start = text.rfind("\n", 0, key.start_mark.index) + 1
        splice = _Splice(start, _line_end(text, _end(item)), "")
    new = _apply(text, [splice])
    _verify(text, new, document, lambda data: _delete(data, path), path)
    return new


def _apply(text: str, splices: Sequence[_Splice]) -> str:
    """Apply non-overlapping splices; new lines follow the file's line endings."""
    crlf = "\r\n" in text
    for splice in sorted(splices, key=lambda s: s.start, reverse=True):
        if crlf:
            splice = _Splice(splice.start, splice.end, splice.text.replace("\n", "\r\n"))
        text = splice.apply(text)
    return text


# --- reading ---------------------------------------------------------------------------


def _documents(text: str) -> list[Node]:
    try:
        return compose_round_trip(text)
    except YamlSyntaxError as exc:
        raise EditError(f"{exc.line}:{exc.col}: {exc.message}") from None


def _entry(node: Node, step: str | int) -> tuple[Node, Node] | None:
    """(key node, value node) of `step` in a mapping."""
    if isinstance(node, MappingNode):
        for key, item in node.value:
            if isinstance(key, ScalarNode) and key.value == str(step):
                return key, item
    return None


def _value(node: Node, step: str | int) -> Node | None:
    found = _entry(node, step)
    return None if found is None else found[1]


def _walk(node: Node, seen: Counter[int]) -> None:
    seen[id(node)] += 1
    if seen[id(node)] > 1:
        return  # an alias: the anchored node is counted again, not walked again
    for child in _children(node):
        _walk(child, seen)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, MappingNode):
        for key, item in node.value:
            yield key
            yield item
    elif isinstance(node, SequenceNode):
        yield from node.value


def _shared(root: Node) -> Counter[int]:
    seen: Counter[int] = Counter()
    _walk(root, seen)
    return seen


def _refuse_shared(node: Node, shared: Counter[int], where: JsonPath) -> None:
    """Changing a node an alias also reaches would change the other place too."""
    if shared[id(node)] > 1:
        anchor = getattr(node, "anchor", None)
        what = format_path(where) or "the document"
        raise EditError(
            f"{what} is shared through the YAML anchor &{anchor}: changing it would change "
            "every alias of it too; edit it by hand"
        )


def _end(node: Node) -> int:
    """Where the text of `node` ends: block collections end at their last value, not at
    the next token (which may lie beyond comments that belong to what follows)."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _end(last[1] if isinstance(last, tuple) else last)
    return int(node.end_mark.index)


def _start(text: str, node: Node) -> int:
    """Where the value of `node` starts: after its anchor and tag, if written."""
    start = int(node.start_mark.index)
    while text[start] in "&!":
        while text[start] not in " \t\n":
            start += 1
        while text[start] in " \t\n":
            start += 1
    return start


def _emptied_block(text: str, node: MappingNode) -> list[_Splice] | None:
    """The splices that write a block mapping of one entry as `{}` after its key's colon
    and drop the entry's own lines, comment lines between the two kept."""
    entry_start = text.rfind("\n", 0, int(node.start_mark.index)) + 1
    entry_end = _line_end(text, _end(node))
    line_end = entry_start - 1  # the newline before the entry's line
    while line_end > 0:
        line_start = text.rfind("\n", 0, line_end) + 1
        line = text[line_start:line_end].rstrip("\r")
        if line.strip() and not line.lstrip().startswith("#"):
            colon = _KEY_COLON.search(line)
            if colon is None:
                return None
            at = line_start + colon.start() + 1
            return [_Splice(at, at, " {}"), _Splice(entry_start, entry_end, "")]
        line_end = line_start - 1
    return None


# A key's colon that ends its line, or is followed by a comment only.
_KEY_COLON = re.compile(r":(?=[ \t]*(#.*)?$)")


def _line_end(text: str, index: int) -> int:
    """The index after the newline that ends the line holding `index`."""
    if index > 0 and text[index - 1] == "\n":
        return index  # a block scalar's span already takes its newline
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


# --- changing --------------------------------------------------------------------------


def _replace(text: str, node: Node, value: Any, flow: bool) -> Iterator[_Splice]:
    """The smallest splices that give `node` the value `value` (`flow`: inside a flow
    collection, where ',' and brackets end a plain word)."""
    inner = flow or bool(getattr(node, "flow_style", False))
    if isinstance(node, MappingNode) and isinstance(value, dict):
        keys = [k.value for k, _ in node.value if isinstance(k, ScalarNode)]
        if sorted(keys) == sorted(value) and len(keys) == len(node.value):
            for key, item in node.value:
                yield from _replace(text, item, value[key.value], inner)
            return
    if isinstance(node, SequenceNode) and isinstance(value, list) and len(node.value) == len(value):
        for item, new in zip(node.value, value, strict=True):
            yield from _replace(text, item, new, inner)
        return
    if isinstance(node, ScalarNode) and not isinstance(value, dict | list):
        if _scalar_equals(node, value):
            return
        style = node.style if node.style in ("'", '"') else None
        yield _Splice(_start(text, node), _end(node), scalar_text(value, style=style, flow=flow))
        return
    yield _whole(text, node, value)


def _whole(text: str, node: Node, value: Any) -> _Splice:
    start = _start(text, node)
    block = isinstance(node, MappingNode | SequenceNode) and not node.flow_style
    if block and isinstance(value, dict | list) and value:
        indent = "\n" + " " * int(node.start_mark.column)
        return _Splice(start, _end(node), indent.join(block_lines(value)))
    return _Splice(start, _end(node), flow_text(value))


def _insert(text: str, mapping: Node, key_node: Node | None, rest: JsonPath, value: Any) -> _Splice:
    """Add `rest` (missing keys, outermost first) holding `value` to `mapping`."""
    nested: Any = value
    for step in reversed(rest[1:]):
        nested = {step: nested}
    key = scalar_text(str(rest[0]))
    if isinstance(mapping, ScalarNode) and mapping.value in ("", "~", "null", "Null", "NULL"):
        # `prod:` with nothing (or null) after it: give it a one-line mapping.
        flow = f"{{{key}: {flow_text(nested)}}}"
        if mapping.value or key_node is None:
            return _Splice(_start(text, mapping), _end(mapping), flow)
        colon = text.index(":", int(key_node.end_mark.index)) + 1
        return _Splice(colon, colon, " " + flow)
    if not isinstance(mapping, MappingNode):
        raise EditError(f"cannot add {format_path(rest)}: its parent is not a mapping")
    if mapping.flow_style:
        if not mapping.value:
            close = int(mapping.end_mark.index) - 1
            return _Splice(close, close, f"{key}: {flow_text(nested)}")
        after = _end(mapping.value[-1][1])
        return _Splice(after, after, f", {key}: {flow_text(nested)}")
    column = int(mapping.value[0][0].start_mark.column)
    pad = " " * column
    if isinstance(nested, dict | list) and nested:
        lines = [f"{key}:", *("  " + line for line in block_lines(nested))]
    else:
        lines = [f"{key}: {scalar_text(nested)}"]
    at = _line_end(text, _end(mapping))
    newline = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return _Splice(at, at, newline + "".join(f"{pad}{line}\n" for line in lines))


def _remove_flow_entry(text: str, entries: Sequence[tuple[Node, Node]], index: int) -> _Splice:
    key, item = entries[index]
    if index + 1 < len(entries):
        return _Splice(key.start_mark.index, entries[index + 1][0].start_mark.index, "")
    previous = _end(entries[index - 1][1])
    return _Splice(previous, _end(item), "")


def _scalar_equals(node: ScalarNode, value: Any) -> bool:
    current = resolve_plain(node.value) if node.style is None else node.value
    return bool(current == value and type(current) is type(value))


# --- checking --------------------------------------------------------------------------


def _verify(old: str, new: str, document: int, change: Any, path: JsonPath) -> None:
    try:
        before = [doc.data for doc in load_documents(old)]
        after = [doc.data for doc in load_documents(new)]
    except YamlSyntaxError as exc:
        raise EditError(
            f"editing {format_path(path)} would not give valid YAML ({exc.message}); "
            "edit it by hand"
        ) from None
    expected = json.loads(json.dumps(before))
    expected[document] = change(expected[document])
    if json.loads(json.dumps(after)) != expected:
        raise EditError(f"editing {format_path(path)} would change other values; edit it by hand")


def _assign(data: Any, path: JsonPath, value: Any) -> Any:
    node = data
    for step in path[:-1]:
        if not isinstance(node.get(step), dict):
            node[step] = {}
        node = node[step]
    node[path[-1]] = value
    return data


def _delete(data: Any, path: JsonPath) -> Any:
    node = data
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return data
