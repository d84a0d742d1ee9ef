"""Incremental builds for watch mode: re-do only what a batch of changed paths affects.

The pipeline itself is `generator.pipeline.Repository`, the very one a one-shot
`build()` fills from scratch: per spec file, the digest of its bytes and everything
derived from them; across files, unique names, duplicate objects, the Flux objects and
their check, the cluster files, the README. This module only decides which paths a
batch re-reads (reported files, every file in reported folders, linked files each time),
when servegen.yaml starts everything over, and writes the output folder.

The contract: after any sequence of batches the output folder holds exactly what a
one-shot `servegen render` of the same tree writes, byte for byte. While anything is
invalid nothing is written at all, so the folder stays at the last good state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic
from generator.outindex import Digested, KnownDigests, digest, tree_digest
from generator.pipeline import Repository, seeded
from generator.validate import load_config
from generator.write import write_tree


@dataclass(frozen=True)
class BatchResult:
    """What one batch changed, or why nothing was written."""

    changed: tuple[str, ...]  # repository paths whose content changed, appeared or vanished
    rendered: tuple[str, ...]  # models derived again from new bytes (or the build cache)
    written: tuple[str, ...]  # output paths written
    removed: tuple[str, ...]  # output paths removed
    diagnostics: tuple[Diagnostic, ...]  # when not empty, nothing was written
    models: int
    elapsed_ms: float
    full: bool = False  # everything was rebuilt (start, or servegen.yaml changed)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


class IncrementalBuild:
    """The repository at `root`, rendered into its output folder batch by batch.

    The first build (and each after a config change) takes the spec files the latest
    whole build was made from out of that build, their output files left in its cache
    entry and read when written or published (at 10,000 specs a peak of 185 MB rather
    than 248): a publish compares files by their blob ids, found by their digests, so
    it reads only the files of the models that changed."""

    def __init__(self, root: Path, *, out: Path | None = None, crds: Sequence[Path] = ()):
        self.root = root.resolve()
        self._out_override = out.resolve() if out is not None else None
        self._crds = tuple(crds)
        self.config = Config()  # the last valid one: it decides which paths matter
        self._config_problems: tuple[Diagnostic, ...] = ()  # errors only
        self._config_warnings: tuple[Diagnostic, ...] = ()
        self._repository: Repository | None = None  # None: rebuild at the next batch
        self._last_problems: tuple[Diagnostic, ...] = ()
        self._written: Mapping[str, bytes] | None = None  # None: unknown, compare with disk
        self._written_out: Path | None = None
        self._digests: dict[str, tuple[bytes, bytes]] = {}  # path -> (bytes, digest), last _write
        self.generation = 0  # bumped whenever the output folder changes
        # Called with a passing batch's new output tree just before it is written, when
        # it differs from the tree last written (watch --publish starts its commit there).
        self.before_write: Callable[[Mapping[str, bytes]], None] | None = None

    @property
    def out(self) -> Path:
        return self._out_override or self.root / self.config.output

    @property
    def spec_root(self) -> Path:
        return self.root / self.config.specs

    # --- batches --------------------------------------------------------------------

    @property
    def files(self) -> Mapping[str, bytes]:
        """The output tree last written (empty before the first good build), each file's
        digest known (outindex.Digested): files left in a stored build's cache entry are
        read only when asked for, and a publish finds their blob ids by digest."""
        return self._written if self._written is not None else {}

    def initial(self) -> BatchResult:
        """Read, render and write everything; the output folder is compared with disk.

        Models whose inputs an earlier process already built come from the build cache.
        """
        self.reset()
        return self.apply(())

    def reset(self) -> None:
        """Forget every cache: the next batch rebuilds from scratch (after an internal error)."""
        self._repository = None
        self._written = None
        self._digests = {}

    def apply(self, paths: Iterable[Path | str]) -> BatchResult:
        """Process paths that may have changed: each is re-read as it is now."""
        started = time.perf_counter()
        relatives = {rel for rel in map(self._relative, paths) if rel is not None}
        repository = self._repository
        if CONFIG_FILE in relatives or self._config_problems or repository is None:
            changed = self._reload_config() or repository is None
            if self._config_problems:
                return self._failed(started, (CONFIG_FILE,), self._config_problems)
            if changed:
                return self._rebuild(started)
        return self._update(started, self._candidates(relatives))

    # --- servegen.yaml ----------------------------------------------------------------

    def _reload_config(self) -> bool:
        """Load servegen.yaml; True when a valid config differs from the current one."""
        was_broken = bool(self._config_problems)
        config, problems = load_config(self.root)
        # Warnings (e.g. an image outside the supported range) do not break the config.
        self._config_problems = tuple(p for p in problems if p.severity == "error")
        if self._config_problems:
            return False
        changed = was_broken or config != self.config
        self.config, self._config_warnings = config, tuple(problems)
        return changed

    def _rebuild(self, started: float) -> BatchResult:
        # A config change can alter how every spec validates and renders: drop everything.
        repository = self._repository = Repository(
            self.root, self.config, crds=self._crds, config_problems=self._config_warnings
        )
        scanned = repository.scan()
        left = seeded(repository, scanned, self._crds)
        result = self._update(started, left, full=True)
        changed = tuple(sorted({CONFIG_FILE, *result.changed}))
        return dataclasses.replace(result, changed=changed)

    # --- which spec files a batch touches ------------------------------------------------

    def _relative(self, path: Path | str) -> str | None:
        absolute = Path(path) if Path(path).is_absolute() else self.root / path
        try:
            rel = absolute.relative_to(self.root).as_posix()
        except ValueError:
            return None
        return "" if rel == "." else rel

    def _candidates(self, relatives: Iterable[str]) -> set[str]:
        """Spec paths to re-read: reported files, and every file in reported folders.

        A reported folder may have been moved away or in whole (one event for all its
        files), and a replaced spec folder loses the files known under it.
        """
        repository = self._require()
        spec_dir = self.config.specs
        known = repository.files
        out = {rel for rel, state in known.items() if state.volatile}
        for rel in relatives:
            if _within(rel, spec_dir):  # the spec folder itself, or a parent, was replaced
                return out | set(known) | repository.scan()
            if not _within(spec_dir, rel):
                continue
            out.add(rel)
            out.update(path for path in known if path.startswith(rel + "/"))
            folder = self.root / rel
            if folder.is_dir() and not folder.is_symlink():
                out.update(repository.scan(rel))
        return out

    def _require(self) -> Repository:
        if self._repository is None:  # apply() rebuilds first
            raise RuntimeError("no repository state: apply() rebuilds it")
        return self._repository

    # --- per batch --------------------------------------------------------------------

    def _update(self, started: float, candidates: Iterable[str], full: bool = False) -> BatchResult:
        repository = self._require()
        fresh = repository.update(candidates)
        if full:  # a new repository: each file it holds is new, read or taken (seeded())
            fresh = repository.paths()
        if not fresh and not full:  # touched but identical: the last verdict stands
            count = len(repository.models())
            return BatchResult((), (), (), (), self._last_problems, count, _ms(started))
        files = repository.files
        rendered = tuple(m.render.name for rel in fresh if rel in files for m in files[rel].models)
        problems = self._last_problems = repository.problems()
        if _errors(problems):
            return self._failed(started, tuple(fresh), problems, rendered, full)
        models = len(repository.models())
        tree = repository.output()
        if self.before_write is not None and tree != self._written:
            self.before_write(tree)
        written, removed = self._write(tree)
        # Notes count what was not schema-checked: said once, when everything is built.
        notes = repository.notes() if full else ()
        return BatchResult(
            tuple(fresh), rendered, written, removed, (), models, _ms(started), full, notes
        )

    def _failed(
        self,
        started: float,
        changed: tuple[str, ...],
        problems: tuple[Diagnostic, ...],
        rendered: tuple[str, ...] = (),
        full: bool = False,
    ) -> BatchResult:
        self._last_problems = problems
        count = len(self._repository.models()) if self._repository is not None else 0
        return BatchResult(changed, rendered, (), (), problems, count, _ms(started), full)

    # --- the output folder ----------------------------------------------------------------

    def _write(self, files: Mapping[str, bytes]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Write what differs from the last written tree; the first time, compare with disk."""
        out = self.out
        # The whole tree is swapped in at once (a crash leaves old or new, never a mix);
        # bytes this watcher wrote last time are trusted instead of read back.
        known = self._written if self._written_out == out else None
        # With each file's digest the tree has a digest of its own: an output proven to
        # hold it is left alone, and one a few files from it gets only those.
        digested = files if isinstance(files, Digested) else self._digested(files)
        tree = tree_digest(digested.digests())
        stats = write_tree(out, digested, known=known, tree=tree)
        written, removed = stats.written, stats.removed
        self._written, self._written_out = digested, out
        if written or removed:
            self.generation += 1
        return written, removed

    def _digested(self, files: Mapping[str, bytes]) -> KnownDigests:
        """`files` with each one's digest: the one it had last time for the very same
        bytes object (a batch's unchanged files are those objects), else computed."""
        last = self._digests
        digests = {}
        for path, data in files.items():
            seen = last.get(path)
            digests[path] = seen[1] if seen is not None and seen[0] is data else digest(data)
        self._digests = {path: (data, digests[path]) for path, data in files.items()}
        return KnownDigests(files, digests)


# --- helpers ------------------------------------------------------------------------------


def _errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _within(parent: str, rel: str) -> bool:
    """Whether `rel` is `parent` or inside it ("" is the repository root)."""
    return parent in ("", ".") or rel == parent or rel.startswith(parent.rstrip("/") + "/")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
