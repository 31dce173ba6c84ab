"""The `hccr` command: one subcommand per module in `hccr.commands`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; its docstring's
first line is the subcommand's help. Expected failures (bad files, mismatched bundles) are
`ValueError` / `OSError` subclasses and become one line on stderr with a non-zero exit;
set HCCR_DEBUG=1 to see the traceback instead. SIGTERM (`kill`, `timeout`, a container
stopping) is handled as Ctrl-C is, so the output a command was writing is removed, not left
half-written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from hccr import __version__

# verb -> module; imported lazily so `hccr recognize` does not pay for what `hccr train` needs
COMMANDS = {
    "train": "hccr.commands.train",
    "distill": "hccr.commands.distill",
    "compress": "hccr.commands.compress",
    "eval": "hccr.commands.evaluate",
    "profile": "hccr.commands.profile",
    "export": "hccr.commands.export",
    "recognize": "hccr.commands.recognize",
    "demo": "hccr.commands.demo",
}


def build_parser(prog: str, commands: dict[str, str]) -> argparse.ArgumentParser:
    """Builds a parser with one subparser per importable command module."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb, module_name in commands.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # command not built yet
        doc = (module.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else ""
        p = sub.add_parser(
            verb,
            help=summary,
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
    args = build_parser(prog, commands).parse_args(argv)
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
