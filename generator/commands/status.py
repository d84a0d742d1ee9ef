"""`servegen status`: published vs applied, and every model's readiness, from the cluster.

Exit codes: 0 every environment in sync and every model ready; 1 something is not
ready, failed, out of sync or left behind (after the timeout with --wait); 2 usage;
3 the cluster cannot be reached or refuses the credentials (ClusterError).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from generator.errors import (
    EXIT_INVALID,
    EXIT_OK,
    InvalidInputError,
    UsageError,
    inert_json,
    inert_line,
    printable,
)
from generator.options import StatusOptions
from generator.status import (
    DeployHistory,
    EnvironmentStatus,
    Snapshot,
    contexts,
    environment_plans,
    evaluate,
    read_all,
    wait,
)
from generator.statusplan import EnvironmentPlan
from generator.validate import load_config

DEFAULT_TIMEOUT = 600.0


def _check_usage(options: StatusOptions) -> float:
    if options.timeout is not None and not options.wait:
        raise UsageError("status: --timeout needs --wait")
    timeout = DEFAULT_TIMEOUT if options.timeout is None else options.timeout
    if not timeout > 0:
        raise UsageError("status: --timeout must be a positive number of seconds")
    return timeout


def plans_for(options: StatusOptions) -> tuple[list[EnvironmentPlan], DeployHistory]:
    root = options.common.root
    config, diagnostics = load_config(root)
    if any(d.severity == "error" for d in diagnostics):
        raise InvalidInputError(diagnostics)
    for name in options.environments:
        config.require_environment(name)
    names = list(dict.fromkeys(options.environments)) or list(config.environments)
    return environment_plans(root, config, names, options.fetch)


def run(options: StatusOptions) -> int:
    from generator.kube import connect  # the client is imported only by this command

    timeout = _check_usage(options)
    plans, history = plans_for(options)
    clusters = {context: connect(context) for context in contexts(plans)}
    snapshot = read_all(clusters, plans)

    def report(current: Snapshot) -> list[EnvironmentStatus]:
        return [evaluate(p, clusters[p.context].context, current, history) for p in plans]

    if options.wait:
        statuses = wait(clusters, plans, snapshot, report, timeout)
    else:
        statuses = report(snapshot)
    for note in history.notes:
        print(f"servegen: note: {note}", file=sys.stderr)
    print(render(statuses, options.format))
    return EXIT_OK if all(s.ok for s in statuses) else EXIT_INVALID


# --------------------------------------------------------------------------- output


def render(statuses: Sequence[EnvironmentStatus], format: str) -> str:
    if format == "json":
        return inert_json(json.dumps({"environments": [s.to_json() for s in statuses]}, indent=2))
    shown = (_markdown(s) if format == "markdown" else _text(s) for s in statuses)
    # Condition messages are the cluster's words, which may quote what a spec set.
    return "\n".join(inert_line(line) for line in "\n".join(shown).rstrip().split("\n"))


def _short(sha: str | None) -> str:
    return sha[:7] if sha else "-"


def _sync_word(status: EnvironmentStatus) -> str:
    return {True: "in sync", False: "OUT OF SYNC", None: "sync unknown"}[status.in_sync]


def _replicas(ready: int | None, desired: int | None) -> str:
    return f"{'-' if ready is None else ready}/{'-' if desired is None else desired}"


def _text(status: EnvironmentStatus) -> str:
    lines = [
        f"environment {status.name} (context {status.context}): {_sync_word(status)}",
        f"  published {_short(status.published_commit)} "
        f"(source {_short(status.published_source_commit)}), "
        f"applied {printable(status.applied_revision or '-')} "
        f"(source {_short(status.source_commit)})",
        f"  {printable(status.message)}",
    ]
    for m in status.models:
        state = "ready" if m.ready else "NOT READY"
        lines.append(
            f"  {state:9}  {m.name}  {m.runtime}  {_replicas(m.ready_replicas, m.desired)}  "
            f"{m.url or '-'}  {printable(m.message)}"
        )
    # An orphan's name and spec label are the cluster's words, like its messages.
    lines += [
        printable(
            f"  ORPHAN     {o.kind}/{o.name} in namespace {o.namespace} (spec {o.spec}): "
            "not on the deploy branch any more"
        )
        for o in status.orphans
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return printable(text.replace("|", "\\|").replace("\n", " ").replace("`", "'"))


def _markdown(status: EnvironmentStatus) -> str:
    lines = [
        f"### `{status.name}`: {_sync_word(status)}",
        "",
        f"Published `{_short(status.published_commit)}` "
        f"(source `{_short(status.published_source_commit)}`), applied "
        f"`{_cell(status.applied_revision or '-')}` (source `{_short(status.source_commit)}`). "
        f"{_cell(status.message)}",
        "",
        "| model | runtime | ready | replicas | URL | message |",
        "|---|---|---|---|---|---|",
    ]
    for m in status.models:
        lines.append(
            f"| `{m.name}` | {m.runtime} | {'yes' if m.ready else '**no**'} "
            f"| {_replicas(m.ready_replicas, m.desired)} | {_cell(m.url or '-')} "
            f"| {_cell(m.message)} |"
        )
    if status.orphans:
        lines += ["", "Left in the cluster but no longer on the deploy branch:", ""]
        lines += [
            f"- {o.kind} `{_cell(o.namespace)}/{_cell(o.name)}` (spec `{_cell(o.spec)}`)"
            for o in status.orphans
        ]
    return "\n".join(lines) + "\n"
