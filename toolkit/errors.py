"""Typed exceptions of maxrf-bench.

Every error a user can cause derives from :class:`MaxrfError`; the CLI turns each into a
single line on stderr and exit code 2.  Messages say what was expected and what was found.
"""
from __future__ import annotations


class MaxrfError(Exception):
    """Base class of the errors a user can cause (bad input, unknown names, bad options)."""

    exit_code = 2


class ScanValidationError(MaxrfError, ValueError):
    """A scan does not follow the schema; ``problems`` lists each problem found."""

    def __init__(self, problems: list[str] | str, source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.problems))


class StoreError(MaxrfError, OSError):
    """A scan or result store is missing, unreadable or corrupt."""


class UnknownNameError(MaxrfError, KeyError):
    """A method, dataset, metric or preset name that nobody registered."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str = ""):
        self.kind, self.name, self.known, self.hint = kind, name, sorted(known), hint
        super().__init__(kind, name)

    def __str__(self) -> str:  # KeyError would quote the whole message
        known = ", ".join(self.known) if self.known else "(none registered)"
        hint = f"; {self.hint}" if self.hint else ""
        return f"unknown {self.kind} {self.name!r}; expected one of: {known}{hint}"


class ConfigError(MaxrfError, ValueError):
    """A malformed option: ``--set``, scale, preset, device…"""


class PluginError(MaxrfError, RuntimeError):
    """A plugin failed to import or register (fatal only in strict mode)."""


class OutputError(MaxrfError, OSError):
    """An output location that is not this tool's to replace (a folder of other files, the
    input itself) or that the OS refuses (read-only, name too long, no space left)."""
