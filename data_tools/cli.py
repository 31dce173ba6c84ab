"""The `hccr-data` command: pack, info, synth, fonts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hccr.cli import run_cli

COMMANDS = {
    "pack": "data_tools.pack",
    "info": "data_tools.info",
    "synth": "data_tools.synth",
    "fonts": "data_tools.font_install",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("hccr-data", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
