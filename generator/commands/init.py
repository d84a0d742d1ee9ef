"""`servegen init DIR`: scaffold a spec repository that validates as it stands."""

from __future__ import annotations

import json
import re
import shlex
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from generator import schema, terminal
from generator.errors import EXIT_OK, ServegenError, UsageError, counted, printable
from generator.options import InitOptions
from generator.write import write_inside

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold"
WORKFLOW = ".github/workflows/servegen.yml"

# Scaffold file -> where it goes in the new repository.
RENAMES = {
    "gitignore": ".gitignore",
    "workflows/servegen.yml": WORKFLOW,
}

# What the scaffolded workflow installs until someone pins it (see the workflow's comment).
PLACEHOLDER_REQUIREMENT = "servegen @ git+https://github.com/OWNER/servegen@COMMIT_SHA"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def requirement_from_direct_url(text: str) -> str | None:
    """A pinned pip requirement for the servegen that is running, from its PEP 610
    `direct_url.json`: only when it was installed from an https git URL at a commit."""
    try:
        data = json.loads(text)
        url, vcs = data["url"], data["vcs_info"]
    except (ValueError, KeyError, TypeError):
        return None
    commit = vcs.get("commit_id", "") if isinstance(vcs, dict) else ""
    if not (isinstance(url, str) and url.startswith("https://") and vcs.get("vcs") == "git"):
        return None
    if not _COMMIT.fullmatch(commit) or re.search(r"[\s\"'@]", url.partition("://")[2]):
        return None
    return f"servegen @ git+{url}@{commit}"


def installed_requirement() -> str | None:
    try:
        text = distribution("servegen").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    return requirement_from_direct_url(text) if text else None


def scaffold_files(requirement: str | None = None) -> dict[str, bytes]:
    files = {}
    for path in sorted(SCAFFOLD.rglob("*")):
        if path.is_file():
            rel = path.relative_to(SCAFFOLD).as_posix()
            files[RENAMES.get(rel, rel)] = path.read_bytes()
    if requirement:
        workflow = files[WORKFLOW].decode()
        files[WORKFLOW] = workflow.replace(PLACEHOLDER_REQUIREMENT, requirement).encode()
    for name, content in schema.rendered().items():
        files[f"schemas/{name}"] = content.encode()
    return files


def run(options: InitOptions) -> int:
    target = options.directory
    if not target.is_absolute():
        target = options.common.root / target
    if target.exists() and not target.is_dir():
        raise ServegenError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not options.force:
        raise ServegenError(f"{target} is not empty; use --force to write into it anyway")
    requirement = installed_requirement()
    files = scaffold_files(requirement)
    unknown = sorted(set(options.overwrite) - set(files))
    if unknown:
        raise UsageError(f"--overwrite {unknown[0]}: not a file init writes")
    written, kept = [], []
    target.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = target / rel
        # The user's own servegen.yaml, .gitignore or workflow is kept unless named.
        if (path.exists() or path.is_symlink()) and rel not in options.overwrite:
            kept.append(rel)
            continue
        write_inside(target, rel, data)  # a link in the way is replaced or refused
        written.append(rel)
    terminal.summary(
        f"created {counted(len(written), 'file')} in {target}", color=options.common.color
    )
    for rel in kept:
        terminal.note(f"kept existing {rel} (replace it with --overwrite {rel})", stream=sys.stdout)
    in_git = (target / ".git").exists()
    print(next_steps(target, pinned=requirement is not None, in_git=in_git))
    return EXIT_OK


def next_steps(target: Path, *, pinned: bool, in_git: bool = False) -> str:
    lines = [
        "next:",
        *_into_repository(target, in_git),
        "  servegen validate && servegen render        # check and render locally",
        '  git add -A && git commit -qm "Serve specs"',
    ]
    if not pinned:
        lines.append(
            f"  # first pin servegen in {WORKFLOW}: set SERVEGEN_REQUIREMENT to\n"
            "  #   servegen @ git+https://<servegen repository>@<full commit SHA>",
        )
    lines += [
        "  git remote add origin <your repository URL> && git push -u origin main",
        "  # CI (.github/workflows/servegen.yml) then publishes every push to main to the",
        "  # deploy branch; `servegen publish --push` does the same by hand.",
    ]
    return "\n".join(lines)


def _into_repository(target: Path, in_git: bool) -> list[str]:
    """The first steps: into the folder (unless it is where the command ran), and a
    `git init` where there is no repository yet."""
    steps = (
        []
        if target.resolve() == Path.cwd().resolve()
        else [f"cd {printable(shlex.quote(str(target)))}"]
    )
    if not in_git:
        steps.append("git init -q -b main")
    return [f"  {' && '.join(steps)}"] if steps else []
