"""Terminal output: colour only on a terminal, progress bars for long work, summaries."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from generator import cli, progress, terminal
from generator.errors import Diagnostic, problems_summary
from tests.conftest import EXAMPLES

ESC = "\x1b["


def on_a_terminal(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run servegen with stdout and stderr on a real pseudo-terminal."""
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update(env or {}, TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", *argv],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=environment,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal() -> None:
    code, out = on_a_terminal(["-C", str(EXAMPLES), "validate"])
    assert code == 0
    assert ESC in out and "10 specs valid" in out


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--no-color"], {}), ([], {"NO_COLOR": "1"})],
    ids=["--no-color", "NO_COLOR"],
)
def test_no_colour_when_asked(argv: list[str], env: dict[str, str]) -> None:
    code, out = on_a_terminal([*argv, "-C", str(EXAMPLES), "validate"], env)
    assert code == 0 and "10 specs valid" in out
    assert ESC not in out


def test_no_colour_in_a_pipe(example_repo: Path) -> None:
    (example_repo / "specs" / "bad.yaml").write_text("kind: kubeai-text\nname: Bad\n")
    done = subprocess.run(
        [sys.executable, "-m", "generator", "-C", str(example_repo), "validate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert ESC not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "servegen: 2 errors in 1 file"


def test_errors_are_coloured_by_severity() -> None:
    stream = _Terminal()
    diagnostic = Diagnostic("specs/a.yaml", 3, 5, "spec.url", "bad")
    terminal.diagnostic(diagnostic, stream=stream)
    text = stream.getvalue()
    assert "\x1b[1;31merror: \x1b[0m" in text  # bold red
    assert (
        text.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("\x1b[1;31m", "")
        == str(diagnostic) + "\n"
    )
    plain = io.StringIO()
    terminal.diagnostic(diagnostic, stream=plain)
    assert plain.getvalue() == str(diagnostic) + "\n"


@pytest.mark.parametrize("stream", [io.StringIO, _Terminal], ids=["pipe", "terminal"])
def test_no_summary_sends_an_escape_from_a_path_it_names(
    tmp_path: Path, stream: type[io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder named with an escape sequence (typed, or pasted) is named escaped."""
    target = tmp_path / "a\x1b[2Jb"
    out = stream()
    terminal.summary(f"created 10 files in {target}", stream=out)
    assert "\x1b[2J" not in out.getvalue() and "a\\x1b[2Jb" in out.getvalue()
    assert cli.main(["init", str(target)]) == 0
    shown = capsys.readouterr().out
    assert "\x1b[2J" not in shown and shown.count("a\\x1b[2Jb") == 2, shown  # summary, cd


def test_progress_bar_on_a_terminal_for_long_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(terminal, "PROGRESS_AFTER_S", 0.0)  # every render counts as long
    assert cli.main(["-C", str(EXAMPLES), "render", "--out", str(tmp_path / "out")]) == 0
    assert "rendering" in err.getvalue() and "10/10" in err.getvalue()


def test_no_progress_bar_for_quick_work_or_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(terminal, "PROGRESS_AFTER_S", 3600.0)
    assert cli.main(["-C", str(EXAMPLES), "render", "--out", str(tmp_path / "a")]) == 0
    assert err.getvalue() == ""
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(terminal, "PROGRESS_AFTER_S", 0.0)
    assert cli.main(["-C", str(EXAMPLES), "render", "--out", str(tmp_path / "b")]) == 0
    assert pipe.getvalue() == ""


def test_progress_steps_reach_only_a_listener() -> None:
    seen: list[tuple[int, int]] = []
    progress.step(1, 2)  # nobody listening: nothing happens
    with progress.reporting(lambda done, total: seen.append((done, total))):
        progress.step(1, 2)
        progress.step(2, 2)
    progress.step(3, 3)
    assert seen == [(1, 2), (2, 2)]


@pytest.mark.parametrize(
    ("diagnostics", "expected"),
    [
        ([], "0 errors in 0 files"),
        ([Diagnostic("a", 1, 1, "", "x")], "1 error in 1 file"),
        (
            [
                Diagnostic("a", 1, 1, "", "x"),
                Diagnostic("a", 2, 1, "", "y"),
                Diagnostic("b", 1, 1, "", "z"),
                Diagnostic("c", 0, 0, "", "w", "warning"),
            ],
            "3 errors in 2 files, 1 warning",
        ),
    ],
)
def test_problems_summary(diagnostics: list[Diagnostic], expected: str) -> None:
    assert problems_summary(diagnostics) == expected


def test_a_path_without_dot_dot_is_shown_as_given() -> None:
    assert terminal.shown_path(Path("examples/output")) == "examples/output"
    assert terminal.shown_path(Path("/srv/out")) == "/srv/out"


def test_a_path_with_dot_dot_is_shown_from_where_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere" / "deep")
    (tmp_path / "out-link").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    assert terminal.shown_path(Path("examples/../output")) == "output"
    assert terminal.shown_path(Path("examples/..")) == "."
    # `..` after a linked folder is the parent of the link's target, as the system reads it.
    assert terminal.shown_path(Path("linked/../output")) == "elsewhere/output"
    # The last part is not resolved: a link named there is shown as the link.
    assert terminal.shown_path(Path("examples/../out-link")) == "out-link"
    # Outside the working folder: the whole path, with nothing left to resolve.
    monkeypatch.chdir(tmp_path / "examples")
    assert terminal.shown_path(Path("../../x")) == str(tmp_path.parent.resolve() / "x")
