"""The `hccr` command: one subcommand per module in `hccr.commands`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; its docstring's
first line is the subcommand's help. Only the chosen command's module is imported (`hccr --help`
reads the others' docstrings from source: 0.08 s instead of ~4 s with torch), and a command
module that is missing or broken is an error, never skipped. Expected failures (bad files, mismatched bundles) are
`ValueError` / `OSError` subclasses and become one line on stderr with a non-zero exit;
set HCCR_DEBUG=1 to see the traceback instead. SIGTERM (`kill`, `timeout`, a container
stopping) is handled as Ctrl-C is, so the output a command was writing is removed, not left
half-written.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hccr import __version__

# verb -> module; only the chosen one is imported, so `hccr --help` and `hccr recognize` do not
# pay for what `hccr train` needs
COMMANDS = {
    "train": "hccr.commands.train",
    "distill": "hccr.commands.distill",
    "compress": "hccr.commands.compress",
    "eval": "hccr.commands.evaluate",
    "profile": "hccr.commands.profile",
    "export": "hccr.commands.export",
    "recognize": "hccr.commands.recognize",
    "adapt": "hccr.commands.adapt",
    "demo": "demo.command",  # the demo owns its command; the library never imports it
}


def _summary(module_name: str) -> str:
    """The first line of a command module's docstring, read from its source without importing
    it: `hccr --help` must not pay for torch, which most command modules import."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"command module {module_name} not found", name=module_name)
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _chosen_verb(argv: Sequence[str], commands: dict[str, str]) -> str | None:
    # the first word that is not an option; the top-level parser has no option taking a value
    verb = next((a for a in argv if not a.startswith("-")), None)
    return verb if verb in commands else None


def build_parser(
    prog: str, commands: dict[str, str], argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """Builds a parser with one subparser per command; only the chosen command's module is
    imported (to add its arguments), the others are listed from their docstrings. Without
    `argv` every command module is imported, as a check that each one builds."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else _chosen_verb(argv, commands)
    for verb, module_name in commands.items():
        if argv is not None and verb != chosen:
            sub.add_parser(verb, help=_summary(module_name))
            continue
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            verb,
            help=doc.splitlines()[0] if doc else "",
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the command's process so that it unwinds as it does on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    # A group kill (`timeout`, `kill -- -PGID`, a container stop) ends the DataLoader workers
    # too. PyTorch's SIGCHLD handler would then raise "worker killed by signal" in the middle of
    # the teardown, a traceback after "terminated": their end is expected now, so that handler
    # is set aside. A no-op, not SIG_DFL: a SIGCHLD already pending still finds a Python handler
    # (without one, Python prints "Signal 17 ignored due to race condition").
    current = signal.getsignal(signal.SIGCHLD)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None, _ignore_signal):
        _sigchld_set_aside.append(signal.signal(signal.SIGCHLD, _ignore_signal))
    raise Terminated


def _ignore_signal(signum: int, frame: object) -> None:
    pass


def _default_sigterm_across_fork() -> None:
    # A forked worker (pack pool, DataLoader) must inherit the default SIGTERM action, not this
    # handler: a Python handler only runs between bytecodes, so a worker stuck in C, as in an
    # at-fork handler waiting on a lock another thread held, would outlive Pool.terminate() and
    # hang its parent. Dispositions are copied at fork, so the parent holds the default while it
    # forks (only the main thread may change them). The parent does the cleaning up.
    if signal.getsignal(signal.SIGTERM) is _on_sigterm and _in_main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _forking.append(True)


def _restore_sigterm_after_fork() -> None:
    if _forking:
        _forking.pop()
        signal.signal(signal.SIGTERM, _on_sigterm)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_forking: list[bool] = []  # set while the parent forks with its handler set aside
_sigchld_set_aside: list[object] = []  # the SIGCHLD handler a SIGTERM set aside, restored after
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_default_sigterm_across_fork,
        after_in_parent=_restore_sigterm_after_fork,
        after_in_child=_forking.clear,
    )


def run_cli(prog: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    """Parses argv and runs the chosen command, turning expected errors into one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog, commands, argv).parse_args(argv)
    # only the main thread may set handlers (a CLI called from a thread keeps the default)
    in_main = _in_main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return int(args._run(args) or 0)
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        if os.environ.get("HCCR_DEBUG"):
            raise
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
            while _sigchld_set_aside:  # the run's workers are gone; later DataLoaders need it
                signal.signal(signal.SIGCHLD, _sigchld_set_aside.pop())


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("hccr", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
