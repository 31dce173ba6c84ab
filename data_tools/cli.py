"""The `hccr-data` command: one subcommand per module in `data_tools.commands`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hccr.cli import run_cli

COMMANDS = {
    "pack": "data_tools.commands.pack",
    "info": "data_tools.commands.info",
    "synth": "data_tools.commands.synth",
    "fonts": "data_tools.commands.fonts",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("hccr-data", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
