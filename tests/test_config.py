"""Dataclass configs <-> CLI flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from hccr.config import add_config_args, config_from_args


@dataclass
class _Example:
    lr: float = field(default=0.1, metadata={"help": "learning rate"})
    epochs: int = 3
    amp: bool = True
    hint_layers: tuple[str, ...] = ("a", "b")
    resume: str | None = None


def test_flags_from_fields_round_trip():
    parser = argparse.ArgumentParser()
    add_config_args(parser, _Example)
    assert config_from_args(_Example, parser.parse_args([])) == _Example()
    args = parser.parse_args(["--lr", "0.5", "--no-amp", "--hint-layers", "x", "--resume", "r"])
    assert config_from_args(_Example, args) == _Example(
        lr=0.5, amp=False, hint_layers=("x",), resume="r"
    )
    assert "learning rate" in parser.format_help()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from data_tools.cli import main as data_main

    assert data_main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hccr-data info: error: {tmp_path}: not an LMDB folder (no data.mdb)"]
