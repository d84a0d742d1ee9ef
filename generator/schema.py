"""JSON Schemas for editors and CI, generated from the pydantic models."""

from __future__ import annotations

import json
from functools import reduce
from operator import or_
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

import runtimes
import schemas
from generator.config import Config
from generator.write import write_inside

SPEC_SCHEMA = "servespec.schema.json"
CONFIG_SCHEMA = "servegen-config.schema.json"
SCHEMA_URL = "https://servegen.dev/schemas/"


def packaged_dir() -> Path:
    return Path(schemas.__file__).parent


def _keys_as_property_names(node: Any) -> None:
    """pydantic writes `dict[DnsLabel, X]` as `patternProperties: {<pattern>: X}`, which
    leaves a key that breaks the pattern (and its value) unchecked: validate refuses such a
    key. Every key is checked instead: `propertyNames` holds the pattern, every value is X."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if (
            isinstance(patterns, dict)
            and len(patterns) == 1
            and "properties" not in node
            and "additionalProperties" not in node
        ):
            [(pattern, value)] = patterns.items()
            del node["patternProperties"]
            node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
            node["additionalProperties"] = value
        for child in node.values():
            _keys_as_property_names(child)
    elif isinstance(node, list):
        for child in node:
            _keys_as_property_names(child)


def spec_schema() -> dict[str, Any]:
    documents = [runtime.document for runtime in runtimes.registry().values()]
    union = reduce(or_, documents)
    discriminated: Any = Annotated[union, Field(discriminator="kind")]
    adapter: TypeAdapter[Any] = TypeAdapter(discriminated)
    schema = adapter.json_schema()
    _keys_as_property_names(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["$id"] = SCHEMA_URL + SPEC_SCHEMA
    schema["title"] = "servegen serve spec"
    schema["description"] = "One model served on Kubernetes; `kind` picks the runtime."
    return schema


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    _keys_as_property_names(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["$id"] = SCHEMA_URL + CONFIG_SCHEMA
    schema["title"] = "servegen.yaml"
    return schema


def rendered() -> dict[str, str]:
    """File name -> exact file content (stable: sorted keys, trailing newline)."""
    return {
        SPEC_SCHEMA: json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n",
        CONFIG_SCHEMA: json.dumps(config_schema(), indent=2, sort_keys=True) + "\n",
    }


def stale_files(directory: Path) -> list[str]:
    stale = []
    for name, content in rendered().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale


def write(base: Path, folder: str = "") -> list[str]:
    """Write the schemas that differ into `base`/`folder`; no symlink on the way from
    `base` is followed (see write.write_inside)."""
    directory = base / folder if folder else base
    written = []
    for name, content in rendered().items():
        path = directory / name
        if path.is_symlink() or not path.is_file() or path.read_text(encoding="utf-8") != content:
            write_inside(base, f"{folder}/{name}" if folder else name, content.encode())
            written.append(name)
    return written
