"""The unit problems, each one a kind of mapping issue, and the cached form of a refusal."""

from __future__ import annotations

from dataclasses import dataclass


class UnitError(ValueError):
    """Base class of every unit problem, so mapping code can turn any of them into a MappingIssue."""


class UnknownUnit(UnitError):
    """The spelling is not one we can read at all (issue kind ``unknown_unit``)."""

    def __init__(self, unit: str, detail: str = "") -> None:
        self.unit = unit
        self.detail = detail
        message = f"unknown unit {unit!r}"
        super().__init__(f"{message}: {detail}" if detail else message)

    def __reduce__(self) -> tuple[type[UnknownUnit], tuple[str, str]]:
        return (type(self), (self.unit, self.detail))


class NotConvertible(UnitError):
    """Both units are readable but one cannot become the other (issue kind ``unit_not_convertible``).

    Either the dimensions differ (mg/dL -> 10*9/L) or the conversion needs
    a molar mass that was not given (umol/L -> mg/dL).  ``reason`` says which.
    ``from_unit`` and ``to_unit`` are the normalized UCUM codes, so one issue
    covers every spelling of the same unit pair.
    """

    def __init__(self, from_unit: str, to_unit: str, reason: str) -> None:
        self.from_unit = from_unit
        self.to_unit = to_unit
        self.reason = reason
        super().__init__(f"cannot convert {from_unit!r} to {to_unit!r}: {reason}")

    def __reduce__(self) -> tuple[type[NotConvertible], tuple[str, str, str]]:
        return (type(self), (self.from_unit, self.to_unit, self.reason))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A cached "no".

    Rebuilt into a fresh exception on every call: raising one shared instance
    again and again would pile up tracebacks on it.
    """

    unknown: str | None = None
    detail: str = ""
    from_unit: str = ""
    to_unit: str = ""

    def error(self) -> UnitError:
        if self.unknown is not None:
            return UnknownUnit(self.unknown, self.detail)
        return NotConvertible(self.from_unit, self.to_unit, self.detail)
