"""The FHIR R4 primitive types the lean models use, validated as fhir.resources R4B does.

Each primitive (``string``, ``code``, ``id``, ``integer``, ``decimal``,
``dateTime``, ``instant``; https://hl7.org/fhir/R4/datatypes.html#primitive)
is an annotated type whose check runs inside pydantic-core: ``pattern=``
constraints and ready-made core schemas, no Python validator per value
except for the rare leap second.  ``lean_models`` builds the datatypes and
resources from them.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated, Any

import pydantic
from pydantic import StringConstraints, TypeAdapter
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["Code", "DateTime", "Decimal", "Id", "Instant", "Integer", "String", "Uri"]

# The regexes are the ones of the FHIR R4 specification as fhir.resources
# (fhir_core.types) applies them; pydantic-core evaluates ``pattern=`` with the
# same Rust regex engine for both, so a value one accepts the other accepts.

_STRING = "[ \r\n\t\\S]+"  # https://hl7.org/fhir/R4/datatypes.html#string (searched, not anchored)
_CODE = r"^[^\s]+(\s[^\s]+)*$"
_ID = r"^[A-Za-z0-9\-.]+$"
_ID_MAX_LENGTH = 255  # fhir_core.constraints.TYPES_ID_MAX_LENGTH (R4 says 64; servers send longer)
_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_HOUR_MINUTE = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_FRACTION_ZONE = r"(\.[0-9]+)?(Z|([+\-])((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_PARTIAL_DATE = rf"^{_YEAR}(-{_MONTH})?$"
_DATE = rf"^{_YEAR}-{_MONTH}-{_DAY}$"
_DATE_TIME = rf"^{_YEAR}-{_MONTH}-{_DAY}T{_HOUR_MINUTE}:[0-5][0-9]{_FRACTION_ZONE}$"
_LEAP_SECOND = rf"^{_YEAR}-{_MONTH}-{_DAY}T{_HOUR_MINUTE}:60{_FRACTION_ZONE}$"

String = Annotated[str, StringConstraints(pattern=_STRING)]
Code = Annotated[str, StringConstraints(pattern=_CODE)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=_ID_MAX_LENGTH, pattern=_ID)]
Uri = str  # the R4 uri regex \S* matches every string
Integer = Annotated[int, pydantic.Field(ge=-(2**31), le=2**31 - 1)]

_DATETIME_ADAPTER: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)


def _leap_second(value: str) -> str:
    """A dateTime whose seconds are 60: checked with 59, kept as the string.

    Python's datetime cannot hold a leap second, so fhir.resources keeps the
    text (and the engine then refuses it as a time); rare enough to be Python.
    """
    head, _, tail = value.partition(":60")
    try:
        _DATETIME_ADAPTER.validate_python(f"{head}:59{tail}")
    except pydantic.ValidationError:
        raise PydanticCustomError("fhir_date_time", "not a valid date") from None
    return value


class _CoreSchema:
    """Annotated metadata that hands pydantic a ready-made core schema."""

    def __init__(self, schema: core_schema.CoreSchema) -> None:
        self.schema = schema

    def __get_pydantic_core_schema__(self, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        return self.schema


def _timestamp() -> core_schema.CoreSchema:
    # fhir.resources hands a JSON number to pydantic's datetime parser, which
    # reads it as a Unix timestamp (UTC); booleans are refused.
    number = core_schema.union_schema(
        [core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)]
    )
    return core_schema.chain_schema([number, core_schema.datetime_schema()])


def _leap() -> core_schema.CoreSchema:
    return core_schema.chain_schema(
        [
            core_schema.str_schema(pattern=_LEAP_SECOND),
            core_schema.no_info_plain_validator_function(_leap_second),
        ]
    )


_DATE_TIME_SCHEMA = core_schema.union_schema(
    [
        core_schema.chain_schema([core_schema.str_schema(pattern=_DATE_TIME), core_schema.datetime_schema()]),
        core_schema.chain_schema([core_schema.str_schema(pattern=_DATE), core_schema.date_schema()]),
        core_schema.str_schema(pattern=_PARTIAL_DATE),  # "2025" or "2025-03": kept as text
        _leap(),
        _timestamp(),
    ],
    mode="left_to_right",
    custom_error_type="fhir_date_time",
    custom_error_message="Input should be a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or "
    "YYYY-MM-DDThh:mm:ss(.sss)+zz:zz",
)
_INSTANT_SCHEMA = core_schema.union_schema(
    [
        core_schema.chain_schema([core_schema.str_schema(pattern=_DATE_TIME), core_schema.datetime_schema()]),
        _leap(),
        _timestamp(),
    ],
    mode="left_to_right",
    custom_error_type="fhir_instant",
    custom_error_message="Input should be a FHIR instant: YYYY-MM-DDThh:mm:ss(.sss)+zz:zz",
)
# fhir.resources checks str(value) against the decimal regex, then Decimal(value)
# (a float through str(), so 1.0 stays Decimal("1.0")); decimal_schema does the same.
_DECIMAL_SCHEMA = core_schema.union_schema(
    [
        core_schema.chain_schema([core_schema.int_schema(strict=True), core_schema.decimal_schema()]),
        core_schema.chain_schema(
            [core_schema.float_schema(strict=True, allow_inf_nan=False), core_schema.decimal_schema()]
        ),
        core_schema.chain_schema([core_schema.str_schema(pattern=_DECIMAL), core_schema.decimal_schema()]),
    ],
    mode="left_to_right",
    custom_error_type="fhir_decimal",
    custom_error_message="Input should be a FHIR decimal (a JSON number)",
)

DateTime = Annotated[dt.datetime | dt.date | str, _CoreSchema(_DATE_TIME_SCHEMA)]
Instant = Annotated[dt.datetime | str, _CoreSchema(_INSTANT_SCHEMA)]
Decimal = Annotated[decimal.Decimal, _CoreSchema(_DECIMAL_SCHEMA)]
