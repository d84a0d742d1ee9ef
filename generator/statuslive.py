"""`servegen watch --status`: the cluster's live state next to the local render.

A background thread lists and then watches what the current render puts in each
environment (the same plan and rules as `servegen status`) and reports whenever the
live state changes. After each render that changed the output it plans again. A
cluster that cannot be reached is reported and tried again later; it never stops the
watcher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from generator.errors import ServegenError, printable
from generator.kube import Cluster, connect
from generator.status import (
    EnvironmentStatus,
    Follower,
    Snapshot,
    contexts,
    deploy_history,
    evaluate,
    read_all,
    render_models,
)
from generator.statusplan import environment_plan

RETRY_SECONDS = 10.0  # after a failure to reach the cluster, or sooner on a new render
HORIZON_SECONDS = 3600.0  # watches are re-opened at least this often

Emit = Callable[[Sequence[EnvironmentStatus] | str], None]


class LiveView:
    def __init__(self, root: Path, emit: Emit) -> None:
        self.root = root
        self.emit = emit
        self._replan = threading.Event()
        self._stop = threading.Event()
        self._follower: Follower | None = None
        self._lock = threading.Lock()
        self._clusters: dict[str | None, Cluster] = {}
        self._last: list[dict[str, object]] | None = None
        self._thread = threading.Thread(target=self._run, name="servegen-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self) -> None:
        """The render changed: plan again."""
        self._replan.set()
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._replan.set()
        self._wake()
        self._thread.join(timeout=10)

    def _wake(self) -> None:
        with self._lock:
            if self._follower is not None:
                self._follower.wake()

    def _run(self) -> None:
        self._replan.wait()
        while not self._stop.is_set():
            self._replan.clear()
            try:
                self._follow()
            except ServegenError as exc:  # unreachable cluster, a render that fails, ...
                self.emit(f"live status unavailable: {exc.message}")
                self._last = None
                self._replan.wait(RETRY_SECONDS)

    def _follow(self) -> None:
        config, models = render_models(self.root)
        plans = [
            environment_plan(models, config, env, None, config.environments[env].context)
            for env in config.environments
        ]
        history = deploy_history(self.root, config, fetch=False)
        for context in contexts(plans):
            if context not in self._clusters:
                self._clusters[context] = connect(context)
        clusters = self._clusters

        def report(snapshot: Snapshot) -> list[EnvironmentStatus]:
            statuses = [evaluate(p, clusters[p.context].context, snapshot, history) for p in plans]
            self._report(statuses)
            return statuses

        snapshot = read_all(clusters, plans)
        report(snapshot)
        follower = Follower(clusters, snapshot, report)
        with self._lock:
            self._follower = follower
        try:
            if not self._replan.is_set():
                follower.run(lambda _: self._replan.is_set(), time.monotonic() + HORIZON_SECONDS)
        finally:
            with self._lock:
                self._follower = None

    def _report(self, statuses: Sequence[EnvironmentStatus]) -> None:
        current = [s.to_json() for s in statuses]
        if current != self._last and not self._stop.is_set():
            self._last = current
            self.emit(statuses)


def summary(status: EnvironmentStatus) -> str:
    """One line per environment: sync, how many models are ready, which are not and why."""
    sync = {True: "in sync", False: "out of sync", None: "sync unknown"}[status.in_sync]
    ready = sum(1 for m in status.models if m.ready)
    line = f"live {status.name}: {sync}, {ready}/{len(status.models)} model(s) ready"
    waiting = [f"{m.name} ({m.message})" for m in status.models if not m.ready]
    if waiting:
        line += "; not ready: " + ", ".join(waiting)
    if status.orphans:
        line += "; left behind: " + ", ".join(f"{o.kind}/{o.name}" for o in status.orphans)
    return printable(line)  # messages and orphans' names are the cluster's words
