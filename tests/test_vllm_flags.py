"""serve.args judged as argparse judges them, for every release runtimes/vllm_flags.json lists.

Each listed release's options make an argparse parser here: its switches take no value,
its valued flags one (with their fixed choices), the rest any number, `--help` prints the
usage and exits (the server never starts), and an optional positional model, which
servegen fills first on `vllm serve` (the api_server entrypoint gets `--model` instead).
Drawn command lines then go to both: servegen calls an error exactly what that parser
refuses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Sequence
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtimes.parser_rules import ReleaseFlags
from runtimes.vllm_engine import Version, flag_problems, release_flags
from tests.fuzzing import fuzzed

RELEASES = sorted(release_flags())
# No `--`: what argparse makes of it varies across Python's releases (3.11 keeps a
# trailing one as an unrecognized argument), and vLLM's images run another Python.
VALUES = ["4096", "-1", "-0.5", "true", "auto", "bfloat16", "bf16", "half", "a b", "x"]


@cache
def parser_of(version: Version) -> argparse.ArgumentParser:
    release = release_flags()[version]
    parser = argparse.ArgumentParser(prog="vllm", add_help=False, exit_on_error=False)
    parser.add_argument("model_tag", nargs="?")
    for flag in sorted(release.flags):
        if flag == "--help":
            parser.add_argument(flag, action="help")
        elif flag in release.switches:
            parser.add_argument(flag, action="store_true")
        elif flag in release.valued:
            parser.add_argument(flag, choices=release.choices.get(flag))
        else:
            parser.add_argument(flag, nargs="*")
    return parser


def argparse_refuses(version: Version, args: Sequence[str]) -> bool:
    model = ["org/model"] if release_flags()[version].serve else []
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser_of(version).parse_args([*model, *args])
        except (SystemExit, argparse.ArgumentError):
            return True
    return False


def servegen_refuses(version: Version, args: Sequence[str]) -> bool:
    return any(error for _, _, error in flag_problems(args, version, lambda _: None))


def flag_words(release: ReleaseFlags) -> st.SearchStrategy[str]:
    """A flag of the release, a prefix of one, one it lacks, or one with `=value`."""
    flags = sorted(release.flags)
    whole = st.sampled_from(flags)
    prefix = st.builds(lambda f, n: f[: max(3, len(f) - n)], whole, st.integers(0, 12))
    lacking = st.sampled_from(["--max-model-length", "--no-such-flag", "---", "--x"])
    valued = st.builds(lambda f, v: f"{f}={v}", st.one_of(whole, prefix), st.sampled_from(VALUES))
    return st.one_of(whole, prefix, lacking, valued)


@st.composite
def command_lines(draw: st.DrawFn, stray: bool) -> tuple[Version, list[str]]:
    """A release and its flags, one that takes values followed by a value (or not);
    with `stray`, a value after any word, and the words in any order."""
    version = draw(st.sampled_from(RELEASES))
    release = release_flags()[version]
    words: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        word = draw(flag_words(release))
        words.append(word)
        named = [f for f in release.flags if f == word] or [
            f for f in release.flags if f.startswith(word)
        ]
        takes = len(named) == 1 and named[0] not in release.switches
        if "=" not in word and (takes or stray) and draw(st.booleans()):
            choices = sorted(release.choices.get(named[0], ())) if takes else []
            words.append(draw(st.sampled_from([*VALUES, *choices])))
    if stray:
        words = list(draw(st.permutations(words)))
    return version, words


@fuzzed(600)
@given(command_lines(stray=True))
def test_what_servegen_refuses_the_release_refuses(line: tuple[Version, list[str]]) -> None:
    version, args = line
    if servegen_refuses(version, args):
        assert argparse_refuses(version, args), args


@fuzzed(600)
@given(st.one_of(command_lines(stray=False), command_lines(stray=True)))
def test_servegen_refuses_what_the_release_refuses(line: tuple[Version, list[str]]) -> None:
    version, args = line
    assert servegen_refuses(version, args) == argparse_refuses(version, args), args


@pytest.mark.parametrize("version", RELEASES)
def test_the_parser_here_takes_what_servegen_renders(version: Version) -> None:
    """The stand-in parser is not one that refuses everything."""
    args = ["--served-model-name", "m", "--host", "0.0.0.0", "--port", "8000"]
    assert not argparse_refuses(version, args)
    assert argparse_refuses(version, ["--port"])
    assert argparse_refuses(version, ["--hel"])


@pytest.mark.parametrize("version", RELEASES)
@pytest.mark.parametrize("word", ["--help", "--hel", "--he", "--h", "--help=all"])
def test_the_help_flag_and_its_prefixes_agree(version: Version, word: str) -> None:
    """Drawn rarely: each prefix of --help, refused as the help or as ambiguous."""
    assert servegen_refuses(version, [word]) == argparse_refuses(version, [word]) is True
