"""The one place that configures YAML.

Reading: spec files are parsed with ruamel.yaml's C parser into a node tree, so every
value keeps its line and column; the plain Python data is constructed from the same
nodes. Reading is strict: duplicate keys are errors, and alias expansion is bounded so
a "billion laughs" document is refused before anything walks the expanded data.

Writing: rendered objects are emitted as block-style YAML with a fixed indent and no
line folding, so the same objects always give the same bytes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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


def _writer() -> YAML:
    yaml = YAML(typ="safe", pure=False)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 1 << 30  # never fold long strings: folding makes diffs noisy
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.explicit_start = False
    return yaml


_READER = _reader()
_WRITER = _writer()


@dataclass(frozen=True)
class Document:
    """One YAML document: its data and the node tree that knows where each value is."""

    index: int
    data: Any
    node: Node

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at `path`, or of its deepest existing parent.

        With `key=True` a mapping entry points at its key rather than its value, which
        is where an editor should put the cursor for an unknown or misspelled field.
        """
        node = self.node
        for step in path:
            child = _child(node, step, key=key and step == path[-1])
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1, int(node.start_mark.column) + 1

    def has(self, path: Sequence[str | int]) -> bool:
        """Whether every step of `path` exists in this document."""
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

    Raises YamlSyntaxError for malformed YAML, duplicate keys and alias bombs.
    """
    try:
        if text.count("[") + text.count("{") > MAX_DEPTH:
            _check_depth(text)
        nodes = list(_READER.compose_all(io.StringIO(text)))
    except MarkedYAMLError as exc:
        raise _syntax_error(exc, text) from None
    except YAMLError as exc:  # errors without a mark, e.g. a reader error
        raise YamlSyntaxError(str(exc).strip(), 1, 1) from None
    documents = []
    for index, node in enumerate(nodes):
        if node is None:
            continue
        _check_expansion(node)
        try:
            data = _READER.constructor.construct_document(node)
        except MarkedYAMLError as exc:
            raise _syntax_error(exc, text) from None
        documents.append(Document(index=index, data=data, node=node))
    return documents


def parse_rendered(text: str) -> list[Any]:
    """Parse text servegen itself rendered (no positions needed, so the fast path)."""
    try:
        return list(_READER.load_all(text))
    except YAMLError as exc:
        raise YamlSyntaxError(f"rendered text is not valid YAML: {exc}", 1, 1) from None


def _check_depth(text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH, reading events (no recursion)."""
    depth = 0
    for event in _READER.parse(text):
        name = type(event).__name__
        if name in ("MappingStartEvent", "SequenceStartEvent"):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise YamlSyntaxError(
                    f"document refused: nested too deeply (more than {MAX_DEPTH} levels)",
                    int(mark.line) + 1,
                    int(mark.column) + 1,
                )
        elif name in ("MappingEndEvent", "SequenceEndEvent"):
            depth -= 1


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
    if "\t" in source_line[: col + 1] and "duplicate key" not in problem:
        problem += "; tabs cannot indent YAML, use spaces"
    opened = exc.context_mark
    if opened is not None and exc.problem_mark is not None and opened.line != mark.line:
        problem += f"; the collection opened at line {opened.line + 1}, column {opened.column + 1}"
    return YamlSyntaxError(problem, line, col)


def _check_expansion(root: Node) -> None:
    """Refuse documents whose aliases expand to more than MAX_EXPANDED_NODES nodes."""
    sizes: dict[int, int] = {}

    def size(node: Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlSyntaxError(
                f"document refused: nested too deeply (more than {MAX_DEPTH} levels)",
                int(node.start_mark.line) + 1,
                int(node.start_mark.column) + 1,
            )
        cached = sizes.get(id(node))
        if cached is not None:
            return cached
        total = 1
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node, depth + 1) + size(value_node, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    raise _too_big(value_node, "aliases expand to too many nodes")
        elif isinstance(node, SequenceNode):
            for item in node.value:
                total += size(item, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    raise _too_big(item, "aliases expand to too many nodes")
        sizes[id(node)] = total
        return total

    size(root, 0)


def _too_big(node: Node, why: str) -> YamlSyntaxError:
    return YamlSyntaxError(
        f"document refused: {why} (limit {MAX_EXPANDED_NODES} nodes)",
        int(node.start_mark.line) + 1,
        int(node.start_mark.column) + 1,
    )


def dump_documents(objects: Sequence[Any]) -> str:
    """Serialise objects as a multi-document YAML stream, deterministically."""
    buffer = io.StringIO()
    for index, obj in enumerate(objects):
        if index:
            buffer.write("---\n")
        _WRITER.dump(obj, buffer)
    return buffer.getvalue()


def dump(obj: Any) -> str:
    return dump_documents([obj])


def iter_plain(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Yield (path, leaf) for every scalar of plain JSON-like data."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from iter_plain(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from iter_plain(value, (*path, index))
    else:
        yield path, data


_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Sequence[str | int]) -> str:
    """Render a path the way users read it: `spec.adapters[0].name`, `envs["A.B"]`."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _SIMPLE_KEY.match(step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step, ensure_ascii=False)}]"
    return out
