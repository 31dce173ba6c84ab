"""Dataclass configs turned into argparse flags, and back into JSON for config.json / bundle.json."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one kebab-case flag per dataclass field; the field's default and type drive the flag."""
    hints = typing.get_type_hints(cls)  # f.type is a str under `from __future__ import annotations`
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        helptext = f.metadata.get("help", "")
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=helptext,
            )
        elif origin is tuple:
            parser.add_argument(
                flag,
                dest=f.name,
                nargs="*",
                type=args[0],
                default=default,
                help=f"{helptext} (default: {' '.join(map(str, default))})",
            )
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            inner = next(a for a in args if a is not type(None))
            parser.add_argument(
                flag,
                dest=f.name,
                type=inner,
                default=default,
                help=f"{helptext} (default: {default})",
            )
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(
                flag,
                dest=f.name,
                type=tp,
                default=default,
                choices=choices,
                help=f"{helptext} (default: {default})",
            )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Builds the dataclass from parsed flags; tuples stay tuples so configs compare equal."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name)
        if typing.get_origin(hints[f.name]) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
