"""What a load read, kept and dropped, so nothing is ever dropped silently."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class LoadReport:
    """Accounting of one load: rows_read == rows_kept + sum(dropped.values())."""

    source: str  # path as given
    fingerprint: str  # sha256 of the file bytes
    format: str
    rows_read: int  # data lines (header and blank lines excluded), unparsable ones included
    rows_kept: int
    dropped: dict[str, int]  # rule -> rows it dropped, every rule, in the order applied
    unparsable_lines: list[int]  # first 10 lines not parsed (header = 1; Parquet rows from 1)
    users: int
    items: int
    baskets: int
    time_min: str  # ISO 8601, "" when nothing was kept
    time_max: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy for manifests and --json output."""
        return asdict(self)

    def format_table(self) -> str:
        """A readable summary for the terminal: what was read, dropped (by rule) and kept."""
        share = f"  ({self.rows_kept / self.rows_read:.1%})" if self.rows_read else ""
        counts = [
            ("rows read", self.rows_read, ""),
            *((f"  - {rule}", count, "") for rule, count in self.dropped.items()),
            ("rows kept", self.rows_kept, share),
            ("users", self.users, ""),
            ("items", self.items, ""),
            ("baskets", self.baskets, ""),
        ]
        width = max(len("unparsable at"), *(len(label) for label, _, _ in counts))
        lines = [
            f"{'log':<{width}}  {self.source} ({self.format})",
            f"{'sha256':<{width}}  {self.fingerprint}",
            *(f"{label:<{width}}  {count:>11,}{note}" for label, count, note in counts),
            f"{'time':<{width}}  {self.time_min or '-'} .. {self.time_max or '-'}",
        ]
        if self.unparsable_lines:
            first = ", ".join(str(line) for line in self.unparsable_lines)
            lines.append(f"{'unparsable at':<{width}}  lines {first}")
        return "\n".join(lines)
