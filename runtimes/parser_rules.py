"""How an argparse parser of a server reads its command line: the rules servegen judges
`serve.args` by, for every parser it has listed (runtimes/vllm_flags.json for vLLM's
entrypoints, runtimes/kserve_flags.json for KServe's Hugging Face server).

Each follows CPython 3.11 and 3.12 Lib/argparse.py, as the servers' images run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReleaseFlags:
    """What one parser of a server takes: a vLLM release's entrypoint
    (runtimes/vllm_flags.json) or a KServe release's (runtimes/kserve_flags.json)."""

    serve: bool  # the entrypoint is `vllm serve` (the model its positional), else api_server
    flags: frozenset[str]  # every long option
    switches: frozenset[str]  # take no value: `--x=1` is refused
    valued: frozenset[str]  # take exactly one value: none is refused
    choices: Mapping[str, tuple[str, ...]]  # of `valued`, kept as written: the values taken

    @classmethod
    def listed(cls, listing: Mapping[str, Any], *, serve: bool = False) -> ReleaseFlags:
        """One parser's entry as conformance/flags.py writes it."""
        return cls(
            serve,
            frozenset(listing["flags"]),
            frozenset(listing["switches"]),
            frozenset(listing["valued"]),
            {flag: tuple(values) for flag, values in listing["choices"].items()},
        )


def argparse_takes(name: str, flags: frozenset[str]) -> tuple[str, ...]:
    """The flags argparse takes `name` for: itself, or every flag it is a prefix of
    (allow_abbrev; one is an abbreviation, more are 'ambiguous option', none an
    'unrecognized arguments' error)."""
    if name in flags:
        return (name,)
    return tuple(sorted(flag for flag in flags if flag.startswith(name)))


HELP = frozenset({"--help"})


def asks_for_help(arg: str, flags: frozenset[str]) -> bool:
    """Whether a parser of the long `flags` reads `arg` as its help flag: -h, --help (a
    value too), or a prefix of --help alone. It prints its usage and exits with status 0,
    so the server never starts and the pod restarts it over and over."""
    if arg == "-h":
        return True
    name = arg.partition("=")[0]
    if len(name) < 3 or not "--help".startswith(name):  # (the usual case, at no cost)
        return False
    return argparse_takes(name, flags | HELP) == ("--help",)


HELP_MESSAGE = "{arg} asks for the help: the server exits at start-up instead of serving"


def did_you_mean(name: str, flags: Iterable[str]) -> str:
    import difflib  # only for a message: not on every start-up

    match = difflib.get_close_matches(name, sorted(flags), n=1, cutoff=0.75)
    return f" (did you mean {match[0]}?)" if match else ""


# argparse reads a word starting with `-` as an option when it names one (whole, before
# a `=`, or as a prefix), else unless it is a negative number or holds a space
# (CPython 3.11 and 3.12 Lib/argparse.py _parse_optional, _negative_number_matcher).
NEGATIVE_NUMBER = re.compile(r"-\d+|-\d*\.\d+")


def option_like(arg: str, flags: frozenset[str]) -> bool:
    if len(arg) < 2 or arg[0] != "-":
        return False
    name = arg.partition("=")[0]
    if arg in flags or name in flags or (arg.startswith("--") and argparse_takes(name, flags)):
        return True
    return " " not in arg and not NEGATIVE_NUMBER.fullmatch(arg)


def value_problems(
    args: Sequence[str], index: int, flag: str, release: ReleaseFlags, name: str
) -> Iterator[tuple[int, str, bool]]:
    """What the parser of `release` (called `name` in messages) refuses of the value of
    `args[index]`, which it takes for `flag`: a value for a switch, none for a flag
    that takes one, one outside the flag's fixed choices. Each makes the server exit."""
    written, eq, value = args[index].partition("=")
    at = index
    if eq and flag in release.switches:
        yield (
            index,
            f"{flag} takes no value in {name}: its parser refuses {written}= and "
            "the server exits at start-up",
            True,
        )
        return
    if not eq:
        if flag not in release.valued:
            return
        if index + 1 == len(args) or option_like(args[index + 1], release.flags):
            yield (
                index,
                f"{flag} needs a value in {name}: its parser refuses it without one "
                "and the server exits at start-up",
                True,
            )
            return
        at, value = index + 1, args[index + 1]
    choices = release.choices.get(flag)
    if choices is not None and value not in choices:
        yield (
            at,
            f"{value!r} is not a value {flag} takes in {name} ("
            f"{', '.join(choices)}){did_you_mean(value, choices)}: the server exits at start-up",
            True,
        )
