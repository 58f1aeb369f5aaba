"""Vectorised conversions from stored columns to canonical types that never fail as a whole.

Each converter first tries one strict Arrow cast (the fast path for clean data)
and only when that raises falls back to a tolerant pass that turns each bad
value into null, so one bad line costs one line, not the whole file.
"""

from __future__ import annotations

from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from training.logs.errors import LogError

Column: TypeAlias = pa.ChunkedArray
Values: TypeAlias = pa.Array | pa.ChunkedArray

SECONDS = pa.timestamp("s")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^\d+$"
_ISO_FRACTION_OR_Z = r"(\.\d+)?Z?$"
_ISO_LAYOUTS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)


def to_ids(column: Column, *, upper: bool = False, numeric: bool = False) -> pa.DictionaryArray:
    """Ids as trimmed strings, dictionary-encoded; null where the id is missing or blank.

    Normalising the distinct values instead of every line keeps this cheap (a log
    has far fewer ids than lines), and the codes serve the rules downstream.
    `numeric` rewrites ids written as numbers ("4.0128e+10", "17.0") as plain
    integers, so one id is never two strings.
    """
    encoded = pc.dictionary_encode(_as_strings(column).combine_chunks())
    values = pc.utf8_trim_whitespace(encoded.dictionary)
    if upper:
        values = pc.utf8_upper(values)
    if numeric:
        values = _numbers_as_integers(values)
    blank = pc.equal(values, "")
    if pc.all(pc.equal(values, encoded.dictionary)).as_py() and not pc.any(blank).as_py():
        return encoded  # clean ids: already distinct (0.6 s saved on 2.4M basket ids)
    distinct = pc.dictionary_encode(pc.if_else(blank, None, values))
    codes = distinct.indices.take(encoded.indices)
    return pa.DictionaryArray.from_arrays(codes, distinct.dictionary)


def to_text(column: Column) -> Column:
    """Free text (descriptions, categories) trimmed, with blanks as null.

    ASCII trimming is enough for text (unlike ids) and markedly cheaper on long strings.
    """
    text = pc.ascii_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(text, ""), None, text)


def to_numbers(column: Column, what: str) -> tuple[Column, Column]:
    """float64 values and a mask of values that are missing, not numbers or not finite."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            values = column.cast(pa.float64())
        except pa.ArrowInvalid:
            text = pc.utf8_trim_whitespace(column)
            numbers = pc.if_else(pc.match_substring_regex(text, _NUMBER), text, None)
            values = numbers.cast(pa.float64())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64())
    else:
        raise LogError(f"{what} holds {kind} values, expected numbers")
    return values, pc.invert(pc.fill_null(pc.is_finite(values), False))


def to_times(column: Column, time_format: str | None, what: str) -> tuple[Column, Column]:
    """Naive timestamp[s] values and a mask of failures.

    `time_format`: None for ISO 8601, "unix" for epoch seconds, else a strptime
    format. Time-zone-aware values become UTC.
    """
    kind = column.type
    if time_format == "unix":
        seconds, failed = to_numbers(column, what)
        whole = pc.floor(pc.if_else(failed, None, seconds)).cast(pa.int64(), safe=False)
        return whole.cast(SECONDS), failed
    if pa.types.is_timestamp(kind):
        times = column.cast(pa.timestamp(kind.unit)).cast(SECONDS, safe=False)
    elif pa.types.is_date(kind):
        times = column.cast(SECONDS)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        times = _parse_times(column, time_format)
    else:
        hint = "; for epoch seconds use --time-format unix" if pa.types.is_integer(kind) else ""
        raise LogError(f"{what} holds {kind} values, expected timestamps{hint}")
    return times, pc.is_null(times)


def plain(values: Values) -> Values:
    """Dictionary-decoded values, so equal strings compare equal whatever their codes."""
    return values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values


def _as_strings(column: Column) -> Column:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), None, column)  # pandas writes a missing id as NaN
        whole = _integral_floats_as_ints(column)
        if whole.null_count == column.null_count:
            column = whole
    return column.cast(pa.string())


def _numbers_as_integers(ids: pa.Array) -> pa.Array:
    looks_numeric = pc.match_substring_regex(ids, _NUMBER)
    written_as_number = pc.and_(looks_numeric, pc.invert(pc.match_substring_regex(ids, _INTEGER)))
    as_int = _integral_floats_as_ints(pc.if_else(written_as_number, ids, None).cast(pa.float64()))
    return pc.if_else(pc.is_null(as_int), ids, as_int.cast(pa.string()))


def _integral_floats_as_ints(values: Values) -> Values:
    """Whole floats as int64, anything else (fractions, NaN, null) as null."""
    whole = pc.equal(pc.floor(values), values)
    return pc.if_else(whole, values, None).cast(pa.int64(), safe=False)


def _parse_times(text: Column, time_format: str | None) -> Column:
    if time_format is not None:
        return _strptime(pc.utf8_trim_whitespace(text), time_format)
    try:
        return text.cast(SECONDS)
    except pa.ArrowInvalid:
        pass
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), _ISO_FRACTION_OR_Z, "")
    times = _strptime(text, _ISO_LAYOUTS[0])
    for layout in _ISO_LAYOUTS[1:]:
        if times.null_count == text.null_count:
            break
        times = pc.coalesce(times, _strptime(text, layout))
    return times


def _strptime(text: Column, time_format: str) -> Column:
    times = pc.strptime(text, format=time_format, unit="s", error_is_null=True)
    return times.cast(SECONDS) if times.type.tz is not None else times
