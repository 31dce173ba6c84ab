"""The command line itself: a light `--help`, and commands that fail loudly instead of vanishing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from data_tools.cli import COMMANDS as DATA_COMMANDS
from hccr.cli import COMMANDS, build_parser, run_cli


def _modules_after(code: str) -> set[str]:
    # a fresh interpreter: pytest has torch imported already
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(out.stdout.split())


def test_help_lists_every_command_without_importing_torch() -> None:
    modules = _modules_after(
        "import contextlib, io\nfrom hccr.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    main(['--help'])\n"
        "assert all(verb in out.getvalue() for verb in ('train', 'recognize', 'demo'))"
    )
    assert modules, "the --help subprocess failed"
    assert "torch" not in modules and "hccr.train" not in modules


def test_a_command_imports_only_its_own_module() -> None:
    modules = _modules_after(
        "import contextlib, io\nfrom hccr.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['profile', '--help'])"
    )
    assert "hccr.commands.profile" in modules
    assert "hccr.commands.train" not in modules and "demo.command" not in modules


@pytest.mark.parametrize("commands", [COMMANDS, DATA_COMMANDS], ids=["hccr", "hccr-data"])
def test_every_command_module_builds(commands: dict[str, str]) -> None:
    parser = build_parser("x", commands)  # no argv: every module imported and its flags added
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert list(verbs) == list(commands)


def test_a_missing_command_module_is_an_error_not_a_silent_skip(capsys) -> None:
    commands = {**COMMANDS, "ghost": "hccr.commands.no_such_module"}
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        run_cli("hccr", commands, ["--help"])
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        run_cli("hccr", commands, ["ghost"])


def test_an_unknown_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("hccr", COMMANDS, ["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
