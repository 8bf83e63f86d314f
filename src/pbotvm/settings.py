"""Settings as data: each one a row naming its environment variable, its type and range, its
default and one line of doc. Each side declares its own table (the host's in ``config``, the
guest's in ``guest.settings``); its settings object, its command-line options and the README's
configuration tables all come from that table, so they cannot drift apart.

Shared by host and guest, so it imports nothing of either.
"""

from __future__ import annotations

import enum
import shlex
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import click


class ConfigError(ValueError):
    """Bad configuration; the message names the variable or file and what is wrong."""


# Parsers: each takes the variable's stripped, non-empty text and raises ValueError saying
# what is allowed (the caller names the variable).

def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"out of range {low}..{high}")
        return value
    return parse


def at_least(low: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value < float("inf"):
            raise ValueError(f"expected a number from {low:g} up")
        return value
    return parse


def positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError("expected a number above 0")
    return value


def text(raw: str) -> str:
    return raw


def on_off(raw: str) -> bool:
    """An on/off variable: set, non-empty and not "0" means on (as the original's Perl truth)."""
    return raw != "0"


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in allowed:
            raise ValueError(f"use one of {', '.join(allowed)}")
        return raw.lower()
    return parse


def argv(raw: str) -> list[str] | None:
    """A command, split as a shell would split it (and never run by one); empty: none."""
    try:
        return shlex.split(raw) or None
    except ValueError as e:
        raise ValueError(str(e)) from None


def http_url(raw: str) -> str:
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    return raw


@dataclass(frozen=True)
class Setting:
    """One environment variable. ``field``: the settings object's attribute it fills (empty
    where a program reads it on its own). ``shown``: the default as the README shows it
    (by default the default's own text; empty: none).
    ``empty``: what the variable set to nothing means, where that is not the default (an
    empty stdin command: no input). ``option``: the command-line option that overrides it."""

    variable: str
    doc: str
    parse: Callable[[str], Any]
    default: Any = None
    shown: str = ""
    field: str = ""
    option: str = ""
    empty: Any = ...

    def __post_init__(self) -> None:
        if not self.shown:
            object.__setattr__(self, "shown", _shown(self.default))

    def read(self, env: Mapping[str, str]) -> Any:
        """The variable's value; a bad one is one line naming the variable and what is
        allowed."""
        raw = env.get(self.variable)
        if raw is None:
            return self.default
        raw = raw.strip()
        if not raw:
            return self.default if self.empty is ... else self.empty
        try:
            return self.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{self.variable}={raw!r}: {e}") from None


def _shown(default: Any) -> str:
    """A default as the README shows it: as it would be written; none (empty) for off."""
    if default is None or default is False:
        return ""
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, list):
        return shlex.join(default)
    if isinstance(default, enum.Enum):
        return str(default.value)
    return str(default)


def read(table: Iterable[Setting], env: Mapping[str, str],
         given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fields of ``table``'s rows from ``env``; a command-line value in ``given`` (by
    field, None when not given) wins."""
    given = given or {}
    return {row.field: given[row.field] if given.get(row.field) is not None else row.read(env)
            for row in table if row.field}


def find(table: Iterable[Setting], variable: str) -> Setting:
    return next(row for row in table if row.variable == variable)


class _Parsed(click.ParamType):
    """A command-line value parsed (and refused) as its environment variable's would be."""

    def __init__(self, row: Setting) -> None:
        self.row = row
        self.name = row.field or row.variable

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.row.parse(value.strip())
        except ValueError as e:
            self.fail(str(e), param, ctx)


def option(row: Setting, *declarations: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option that reads ``row``'s variable as its own (``envvar``) and parses and
    refuses a value as the row does; for a command where the option names the setting."""
    return click.option(*declarations, type=_Parsed(row), envvar=row.variable,
                        default=row.default, show_default=bool(row.shown),
                        help=f"{row.doc}  [env {row.variable}]")


def options(table: Iterable[Setting]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """click options for the rows that have one; each passes its row's field (None when not
    given, so the environment and then the default apply)."""
    rows = [row for row in table if row.option]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for row in reversed(rows):
            function = click.option(row.option, row.field, type=_Parsed(row), default=None,
                                    metavar=row.field.upper(),
                                    help=f"{row.doc}  [env {row.variable}; {row.shown or 'none'}]"
                                    )(function)
        return function
    return decorate


def markdown(table: Iterable[Setting]) -> str:
    """The README's table of ``table``."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for row in table:
        shown = f"`{row.shown}`" if row.shown else "\N{EN DASH}"
        lines.append(f"| `{row.variable}` | {shown} | {row.doc} |")
    return "\n".join(lines) + "\n"
