"""The command line: argument parsing, dispatch, and the one place errors become exit codes.

Each command lives in generator/commands/<name>.py and exposes `run(options) -> int`;
they are imported only when chosen so `servegen --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from generator import options as opt
from generator.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ServegenError,
    UsageError,
    printable,
)

VERSION = "0.1.0"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors map to exit code 2 here."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _crds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crds",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="CRD file or folder for custom resource validation (repeatable; adds to "
        "validation.crds in servegen.yaml)",
    )


def _env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", dest="environment", help="only this environment")


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
        help="run in DIR instead of the current directory",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"servegen {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="scaffold a new spec repository")
    p.add_argument("directory", type=Path)
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument(
        "--overwrite",
        action="append",
        default=[],
        metavar="FILE",
        help="with --force, replace this existing file (repeatable); others are kept",
    )

    p = sub.add_parser("validate", help="check the config and every spec")
    p.add_argument("--format", choices=["text", "json", "github"], default="text")
    _crds(p)

    p = sub.add_parser("render", help="render manifests into the output folder")
    p.add_argument("--out", type=Path, help="output folder (default: config `output`)")
    _env(p)
    p.add_argument("--format", choices=["text", "json", "github"], default="text")
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
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
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
    p.add_argument("--sign", action="store_true", help="sign the commit with git's key")
    _crds(p)

    p = sub.add_parser("watch", help="re-render (and optionally publish) on every change")
    p.add_argument("--out", type=Path, help="output folder (default: config `output`)")
    p.add_argument("--publish", action="store_true", help="publish after each good batch")
    p.add_argument("--push", action="store_true", help="push after publishing")
    p.add_argument("--remote", help="remote to push to")
    p.add_argument("--allow-prune", action="store_true")
    p.add_argument(
        "--debounce",
        dest="debounce_ms",
        type=int,
        default=50,
        metavar="MS",
        help="quiet time before a batch is processed (default 50 ms)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    _crds(p)

    p = sub.add_parser("schema", help="write (or --check) the JSON Schemas")
    p.add_argument("--out", type=Path, help="folder to write to (default: the packaged one)")
    p.add_argument("--check", action="store_true", help="fail when the files are stale")

    p = sub.add_parser("endpoints", help="print the OpenAI endpoint catalog")
    _env(p)
    p.add_argument("--format", choices=["table", "json"], default="table")
    return parser


def _options(args: argparse.Namespace) -> tuple[str, Any]:
    common = opt.Common(root=args.root, debug=args.debug)
    fields = {k: v for k, v in vars(args).items() if k not in ("root", "debug", "command")}
    if "crds" in fields:
        fields["crds"] = tuple(fields["crds"])
    if "overwrite" in fields:
        fields["overwrite"] = tuple(fields["overwrite"])
    classes: dict[str, Callable[..., Any]] = {
        "init": opt.InitOptions,
        "validate": opt.ValidateOptions,
        "render": opt.RenderOptions,
        "diff": opt.DiffOptions,
        "publish": opt.PublishOptions,
        "watch": opt.WatchOptions,
        "schema": opt.SchemaOptions,
        "endpoints": opt.EndpointsOptions,
    }
    return args.command, classes[args.command](common=common, **fields)


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if not args.root.is_dir():
            raise UsageError(f"servegen: -C {args.root}: not a directory")
        command, options = _options(args)
        module = importlib.import_module(f"generator.commands.{command}")
        return int(module.run(options))
    except ServegenError as exc:
        return _report_error(exc)
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


def _report_error(exc: ServegenError) -> int:
    for diagnostic in exc.diagnostics:
        print(diagnostic, file=sys.stderr)
    # Messages may quote git or untrusted names: every line escaped, and indented, so no
    # line of ours can pose as a CI workflow command.
    lines = [printable(line) for line in exc.message.splitlines()] or [""]
    print("\n  ".join([f"servegen: {lines[0]}", *lines[1:]]), file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
