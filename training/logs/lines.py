"""Physical line numbers for rows that Arrow numbers without counting blank lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

_CHUNK = 1 << 22
_NEWLINE, _CARRIAGE_RETURN = 10, 13


def physical_lines(path: Path, compression: str | None, numbers: list[int]) -> list[int]:
    """Shift sorted row numbers (header = 1, blank lines skipped) past the blank lines before them.

    Arrow's parser skips blank lines without counting them. This reads the file again,
    but only as far as the last number and only for a log with unparsable lines.
    (A quoted value spanning lines still counts as one line.)
    """
    blanks = iter(_blank_lines(path, compression, up_to=max(numbers, default=0)))
    shifted, blank, skipped = [], next(blanks, None), 0
    for number in numbers:
        while blank is not None and blank <= number + skipped:
            skipped += 1
            blank = next(blanks, None)
        shifted.append(number + skipped)
    return shifted


def _blank_lines(path: Path, compression: str | None, up_to: int) -> list[int]:
    """Physical numbers of the blank lines among the first `up_to` non-blank lines."""
    blanks: list[int] = []
    lines_before = 0  # physical lines in the chunks already scanned
    partial = b""  # the unfinished last line of the previous chunk
    with pa.input_stream(str(path), compression) as stream:
        while lines_before - len(blanks) < up_to and (chunk := stream.read(_CHUNK)):
            data = partial + chunk
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
            if len(ends) == 0:
                partial = data
                continue
            starts = np.concatenate([[0], ends[:-1] + 1])
            first_byte = np.frombuffer(data, dtype=np.uint8)[starts]
            blank = (ends == starts) | ((ends == starts + 1) & (first_byte == _CARRIAGE_RETURN))
            blanks.extend((lines_before + 1 + np.flatnonzero(blank)).tolist())
            lines_before += len(ends)
            partial = data[ends[-1] + 1 :]
    return blanks
