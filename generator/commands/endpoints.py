"""`servegen endpoints`: the OpenAI endpoint catalog, as a table or JSON."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from generator.errors import EXIT_OK, inert_json
from generator.options import EndpointsOptions
from generator.pipeline import build


def run(options: EndpointsOptions) -> int:
    result = build(options.common.root, environment=options.environment)
    environments = (
        [options.environment] if options.environment else list(result.config.environments)
    )
    catalog = {
        env: [
            m.environments[env].endpoint.to_json() for m in result.models if env in m.environments
        ]
        for env in environments
    }
    if options.format == "json":
        print(inert_json(json.dumps(catalog, indent=2, sort_keys=True)))
        return EXIT_OK
    table = Table("environment", "model", "runtime", "base URL", "model value", "adapters")
    for env, rows in catalog.items():
        for row in rows:
            table.add_row(
                env,
                row["name"],
                row["runtime"],
                row["base_url"],
                row["model"],
                ", ".join(row["adapters"]) or "-",
            )
    Console(width=200).print(table)
    return EXIT_OK
