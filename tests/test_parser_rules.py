"""How argparse reads a command line, as servegen models it for the servers' parsers.

The releases' own parsers are checked by conformance/run.py and, for every listed vLLM
release, tests/test_vllm_flags.py; here each rule on a small parser of known options.
"""

from __future__ import annotations

import pytest

from runtimes.parser_rules import (
    ReleaseFlags,
    argparse_takes,
    asks_for_help,
    did_you_mean,
    option_like,
    value_problems,
)

FLAGS = frozenset({"--max-num-seqs", "--max-num-batched-tokens", "--dtype", "--enforce-eager"})
PARSER = ReleaseFlags.listed(
    {
        "flags": sorted(FLAGS | {"--help", "--headless"}),
        "switches": ["--enforce-eager", "--headless", "--help"],
        "valued": ["--max-num-seqs", "--max-num-batched-tokens", "--dtype"],
        "choices": {"--dtype": ["auto", "half"]},
    }
)


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("--dtype", ("--dtype",)),
        ("--dt", ("--dtype",)),
        ("--max-num", ("--max-num-batched-tokens", "--max-num-seqs")),
        ("--max_num_seqs", ()),  # no '_' as '-' in argparse itself
        ("--nope", ()),
    ],
)
def test_a_flag_is_taken_whole_or_as_a_prefix(name: str, taken: tuple[str, ...]) -> None:
    assert argparse_takes(name, FLAGS) == taken


@pytest.mark.parametrize(
    ("arg", "help_"),
    [
        ("-h", True),
        ("--help", True),
        ("--help=all", True),
        ("--hel", True),
        ("--he", False),  # --headless too: ambiguous, not the help
        ("--h", False),
        ("--", False),
        ("--dtype", False),
        ("help", False),
    ],
)
def test_the_help_flag_and_its_prefixes(arg: str, help_: bool) -> None:
    assert asks_for_help(arg, PARSER.flags) is help_


@pytest.mark.parametrize(
    ("arg", "option"),
    [
        ("--dtype", True),
        ("--dt=half", True),
        ("--unknown", True),
        ("-x", True),
        ("-1", False),
        ("-0.5", False),
        ("-x y", False),  # a space: a value, whatever it starts with
        ("half", False),
        ("-", False),
    ],
)
def test_what_reads_as_an_option(arg: str, option: bool) -> None:
    assert option_like(arg, FLAGS) is option


NO_VALUE = "--enforce-eager takes no value in P: its parser refuses --enforce-eager= and the"
NEEDS = "--max-num-seqs needs a value in P: its parser refuses it without one and the"
EXITS = " server exits at start-up"


@pytest.mark.parametrize(
    ("args", "flag", "found"),
    [
        (["--enforce-eager=true"], "--enforce-eager", [(0, NO_VALUE + EXITS)]),
        (["--max-num-seqs"], "--max-num-seqs", [(0, NEEDS + EXITS)]),
        (["--max-num-seqs", "--enforce-eager"], "--max-num-seqs", [(0, NEEDS + EXITS)]),
        (["--max-num-seqs", "-1"], "--max-num-seqs", []),
        (
            ["--dtype", "hlaf"],
            "--dtype",
            [
                (
                    1,
                    "'hlaf' is not a value --dtype takes in P (auto, half) (did you mean half?): "
                    "the" + EXITS,
                )
            ],
        ),
        (["--dtype=half"], "--dtype", []),
        (["--enforce-eager"], "--enforce-eager", []),
    ],
)
def test_values_as_the_parser_takes_them(
    args: list[str], flag: str, found: list[tuple[int, str]]
) -> None:
    problems = list(value_problems(args, 0, flag, PARSER, "P"))
    assert [(index, message) for index, message, _ in problems] == found
    assert all(error for _, _, error in problems)


def test_did_you_mean_names_the_closest_flag_or_nothing() -> None:
    assert did_you_mean("--dtpye", FLAGS) == " (did you mean --dtype?)"
    assert did_you_mean("--zzz", FLAGS) == ""
