"""The command line: argument parsing, dispatch, and the one place errors become exit codes.

Each command lives in generator/commands/<name>.py and exposes `run(options) -> int`;
they are imported only when chosen so `servegen --help` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from generator import options as opt
from generator.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    InvalidInputError,
    ServegenError,
    UsageError,
    printable,
)

# Paths on the command line are relative to where the command runs (-C DIR), as in git;
# paths in servegen.yaml are relative to the repository it finds from there.
_PATH_OPTIONS = ("out", "output_file", "into", "directory")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors map to exit code 2 here."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _Version(argparse.Action):
    """--version, read from the package metadata only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help")
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from generator.version import servegen_version

        print(f"servegen {servegen_version()}")
        parser.exit()


def _crds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crds",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="CRD file or folder for custom resource validation (repeatable; adds to "
        "validation.crds in servegen.yaml; replaces the bundled CRD of the same kind)",
    )


def _env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", dest="environment", help="only this environment")


def _format(parser: argparse.ArgumentParser, *choices: str, what: str = "report") -> None:
    parser.add_argument(
        "--format",
        choices=list(choices),
        default=choices[0],
        help=f"{what} format: {', '.join(choices)} (default {choices[0]})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="servegen",
        description="Render LLM serve specs into Kubernetes manifests and publish them for Flux.",
    )
    parser.add_argument(
        "-C",
        dest="root",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="run in DIR instead of the current directory; relative paths given to "
        "options are relative to DIR too",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument(
        "--no-color",
        dest="no_color",
        action="store_true",
        help="no colour, even on a terminal (so does a non-empty NO_COLOR)",
    )
    parser.add_argument("--version", action=_Version, help="print the servegen version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="scaffold a new spec repository")
    p.add_argument("directory", type=Path, help="folder to create the repository in")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument(
        "--overwrite",
        action="append",
        default=[],
        metavar="FILE",
        help="with --force, replace this existing file (repeatable); others are kept",
    )

    p = sub.add_parser("validate", help="check the config and every spec")
    _format(p, "text", "json", "github")
    _crds(p)

    p = sub.add_parser("render", help="render manifests into the output folder")
    p.add_argument("--out", type=Path, help="output folder (default: config `output`)")
    _env(p)
    _format(p, "text", "json", "github")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail when the output folder is not up to date",
    )
    _crds(p)

    p = sub.add_parser("diff", help="diff rendered objects against a base revision")
    p.add_argument(
        "--base",
        help="git revision to compare with (default: merge base "
        "with the default branch, else the deploy branch's source commit)",
    )
    _env(p)
    _format(p, "text", "markdown", "json", what="diff")
    p.add_argument("--output-file", type=Path, help="also write the full diff here")
    p.add_argument(
        "--max-chars",
        type=int,
        default=60_000,
        help="cap for markdown output (PR comments allow 65,536)",
    )
    p.add_argument(
        "--committed",
        dest="worktree",
        action="store_false",
        help="compare HEAD instead of the working tree",
    )
    _crds(p)

    p = sub.add_parser("publish", help="commit rendered manifests to the deploy branch")
    p.add_argument(
        "--worktree", action="store_true", help="publish the working tree instead of HEAD"
    )
    p.add_argument("--push", action="store_true", help="push the deploy branch")
    p.add_argument("--remote", help="remote to push to (default: deploy.remote or origin)")
    p.add_argument("--branch", help="deploy branch (default: deploy.branch)")
    p.add_argument(
        "--allow-prune",
        action="store_true",
        help="allow removing models or shrinking the object count",
    )
    p.add_argument(
        "--allow-replace",
        action="store_true",
        help="publish changes the cluster refuses in place (delete those objects after)",
    )
    p.add_argument("--sign", action="store_true", help="sign the commit with git's key")
    _crds(p)

    p = sub.add_parser("watch", help="re-render (and optionally publish) on every change")
    p.add_argument("--out", type=Path, help="output folder (default: config `output`)")
    p.add_argument("--publish", action="store_true", help="publish after each good batch")
    p.add_argument(
        "--push",
        action="store_true",
        help="refused: the watched tree holds unmerged edits (push with `publish --push`)",
    )
    p.add_argument("--remote", help="remote to push to (default: deploy.remote or origin)")
    p.add_argument(
        "--allow-prune",
        action="store_true",
        help="allow removing models or shrinking the object count",
    )
    p.add_argument(
        "--debounce",
        dest="debounce_ms",
        type=int,
        default=50,
        metavar="MS",
        help="quiet time before a batch is processed (default 50 ms)",
    )
    _format(p, "text", "json", what="event")
    p.add_argument(
        "--status",
        action="store_true",
        help="also show the cluster's live state, as `servegen status` reads it",
    )
    _crds(p)

    p = sub.add_parser("schema", help="write (or --check) the JSON Schemas")
    p.add_argument(
        "--out", type=Path, help="folder to write to (default: schemas/ in the repository)"
    )
    p.add_argument("--check", action="store_true", help="fail when the files are stale")

    p = sub.add_parser("promote", help="give an environment the model version another one runs")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to promote")
    p.add_argument(
        "--from", dest="source", required=True, metavar="ENV", help="environment to copy from"
    )
    p.add_argument(
        "--to", dest="target", required=True, metavar="ENV", help="environment to change"
    )
    p.add_argument("--all", action="store_true", help="every model enabled in both")
    p.add_argument(
        "--serve",
        action="append",
        default=[],
        metavar="FIELD",
        help="also promote this serve field (repeatable), e.g. --serve args",
    )
    p.add_argument("--dry-run", action="store_true", help="print the change, write nothing")
    p.add_argument("--commit", action="store_true", help="commit the edited spec files")
    p.add_argument(
        "--require-live",
        action="store_true",
        help="refuse unless the cluster runs the source as published and its models are ready",
    )

    p = sub.add_parser("endpoints", help="print the OpenAI endpoint catalog")
    _env(p)
    _format(p, "table", "json", what="output")

    p = sub.add_parser("status", help="live state from the cluster: in sync, models ready")
    p.add_argument(
        "--env",
        dest="environments",
        action="append",
        default=[],
        metavar="ENV",
        help="only this environment (repeatable)",
    )
    _format(p, "text", "json", "markdown", what="report")
    p.add_argument(
        "--wait", action="store_true", help="watch until applied and ready, or the timeout"
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after (600)"
    )
    p.add_argument(
        "--no-fetch",
        dest="fetch",
        action="store_false",
        help="use the local deploy branch; do not fetch it from the remote",
    )

    p = sub.add_parser(
        "crds", help="list the CRDs custom resources are validated against, or fetch newer ones"
    )
    p.add_argument(
        "--refresh",
        action="append",
        default=[],
        metavar="URL",
        help="fetch the CRD at this http(s) URL into --into (repeatable)",
    )
    p.add_argument(
        "--from-cluster",
        action="store_true",
        help="fetch the CRDs of the bundled kinds from the cluster of the current kubeconfig "
        "context into --into",
    )
    p.add_argument(
        "--into",
        type=Path,
        default=Path("crds"),
        metavar="DIR",
        help="folder for fetched CRDs (default: crds); list it in validation.crds",
    )
    _format(p, "table", "json", what="output")
    _crds(p)
    return parser


def _under(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path


def _options(args: argparse.Namespace) -> tuple[str, Any]:
    # Paths given to options are relative to where the command runs (-C DIR), as git's
    # are; the repository is found from there (init makes one instead).
    from generator.load import repository_root  # (YAML and pydantic: not for --help)

    base = args.root
    root = base if args.command == "init" else repository_root(base)
    common = opt.Common(root=root, debug=args.debug, color=False if args.no_color else None)
    skip = ("root", "debug", "command", "no_color")
    fields = {k: v for k, v in vars(args).items() if k not in skip}
    if "crds" in fields:
        fields["crds"] = tuple(_under(base, p) for p in fields["crds"])
    if "environments" in fields:
        fields["environments"] = tuple(fields["environments"])
    for name in ("refresh", "names", "serve", "overwrite"):
        if name in fields:
            fields[name] = tuple(fields[name])
    for key in _PATH_OPTIONS:
        if fields.get(key) is not None:
            fields[key] = _under(base, fields[key])
    classes: dict[str, Callable[..., Any]] = {
        "init": opt.InitOptions,
        "validate": opt.ValidateOptions,
        "render": opt.RenderOptions,
        "diff": opt.DiffOptions,
        "publish": opt.PublishOptions,
        "watch": opt.WatchOptions,
        "schema": opt.SchemaOptions,
        "endpoints": opt.EndpointsOptions,
        "status": opt.StatusOptions,
        "crds": opt.CrdsOptions,
        "promote": opt.PromoteOptions,
    }
    return args.command, classes[args.command](common=common, **fields)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    debug = "--debug" in words
    color = False if "--no-color" in words else None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if not args.root.is_dir():
            raise UsageError(f"-C {args.root}: not a directory")
        # Pydantic would read every installed distribution's entry points looking for
        # plugins (5-9 ms of a cold start) and run what it finds inside servegen's
        # validation: servegen runs no program its environment configures.
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
        command, options = _options(args)
        module = _import_quietly(f"generator.commands.{command}")
        return int(module.run(options))
    except ServegenError as exc:
        return _report_error(exc, color)
    except KeyboardInterrupt:
        print("servegen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        if debug:
            import traceback

            traceback.print_exc()
        else:
            kind = sys.exc_info()[0]
            name = kind.__name__ if kind else "error"
            print(
                f"servegen: internal error ({name}); this is a bug in servegen. "
                "Run again with --debug for the traceback and report it.",
                file=sys.stderr,
            )
        return EXIT_INTERNAL


def entry() -> NoReturn:
    """The `servegen` program (and `python -m generator`): main() on sys.argv, then exit."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process with `code` without the interpreter's teardown, when nothing
    needs it.

    The teardown frees every object one at a time (the loaded schemas and models, every
    module): 50-90 ms of a 400 ms cold `validate`, for memory the system takes back
    at once. What a normal exit does that matters still happens: the output is flushed
    and the atexit handlers run (a temporary folder's cleanup, a worker pool's). A
    thread still running, or output that cannot be flushed, takes Python's own exit,
    which waits for the thread or reports the error as it always has.
    """
    if threading.active_count() > 1:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):  # what a handler printed, if it can
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _import_quietly(name: str) -> Any:
    """Import a command with the cyclic garbage collector paused.

    Importing a command creates hundreds of thousands of objects (pydantic models,
    dataclasses, compiled templates) that all stay alive; the collector would walk
    them over and over for nothing (a tenth of `servegen validate`'s start-up).
    Frozen after (moved out of every generation the collector walks): otherwise the
    first young collections afterwards walk them all once more, for the same nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _report_error(exc: ServegenError, color: bool | None) -> int:
    from generator import terminal

    for diagnostic in exc.diagnostics:
        terminal.diagnostic(diagnostic, color=color)
    # Messages may quote git or untrusted names: every line escaped (split on "\n" only:
    # printable() spells out U+2028 and the other breaks splitlines() would honour), and
    # terminal's writer makes sure none of them poses as a CI workflow command.
    lines = [printable(line) for line in exc.message.split("\n")]
    message = "\n  ".join(lines)
    if isinstance(exc, InvalidInputError):
        terminal.summary(message, ok=False, color=color)
    else:
        terminal.error(message, color=color)
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
