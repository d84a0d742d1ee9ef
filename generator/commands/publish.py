"""`servegen publish`: commit the rendered output to the deploy branch (and push it)."""

from __future__ import annotations

from generator import git, terminal
from generator.config import CONFIG_FILE
from generator.errors import EXIT_OK, UsageError
from generator.options import PublishOptions
from generator.publish import PublishSettings, describe, publish
from generator.snapshot import repository_prefix
from generator.validate import load_config


def run(options: PublishOptions) -> int:
    if options.worktree and options.push:
        # --push publishes merged commits only (publish.check_pushable); the working
        # tree may hold edits no commit has.
        raise UsageError(
            "publish: --worktree and --push together would push uncommitted files; commit, "
            "merge and push them, then publish --push"
        )
    color = options.common.color
    reporter = terminal.TerminalReporter(color)
    with terminal.progress_bar("rendering", color=color):
        outcome = publish(options.common.root, publish_settings(options), reporter)
    left_out = [] if options.worktree or outcome.clean else uncommitted_inputs(options)
    if left_out:
        # Publish renders HEAD: edits not yet committed are not in what was published.
        shown = ", ".join(left_out[:5]) + (" ..." if len(left_out) > 5 else "")
        terminal.note(
            f"{len(left_out)} uncommitted change(s) not published ({shown}): "
            "commit them, or run `servegen publish --worktree` to publish the working tree",
            color=color,
        )
    message = describe(outcome)
    if left_out and outcome.status != "published":
        message += " (HEAD only; uncommitted spec changes are not included)"
    terminal.summary(message, color=color)
    return EXIT_OK


def publish_settings(options: PublishOptions) -> PublishSettings:
    return PublishSettings(
        worktree=options.worktree,
        push=options.push,
        remote=options.remote,
        branch=options.branch,
        allow_prune=options.allow_prune,
        allow_replace=options.allow_replace,
        sign=options.sign,
        crds=options.crds,
        max_attempts=options.max_attempts,
    )


def uncommitted_inputs(options: PublishOptions) -> list[str]:
    """Spec files and servegen.yaml that differ from HEAD in the working tree."""
    root = options.common.root
    repo = git.open_repo(root)
    prefix = repository_prefix(repo, root)
    config, _ = load_config(root)
    inputs = [f"{prefix}/{p}" if prefix else p for p in (config.specs, CONFIG_FILE)]
    return git.uncommitted_paths(repo, inputs)
