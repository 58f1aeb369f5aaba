"""Consent as data: who agreed to what, on which channel, since when.

Consent is never a flag on a customer: it is a ledger of dated records (given or withdrawn, per
customer and channel), and the question is always "at this moment, on this channel?". The
latest record at or before that moment decides; a customer without any record has not
consented. Two records of one customer and channel at the same second resolve to *withdrawn*:
when the data cannot say which came last, the customer is not contacted.

Channels and statuses are closed sets: a value outside them is an error where the data is
read, never a silent default (an unknown status might be a withdrawal).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Channel(StrEnum):
    """Where a customer can be reached or personalised for."""

    EMAIL = "email"
    PERSONALIZATION = "personalization"
    SMS = "sms"

    @classmethod
    def parse(cls, value: str) -> Channel:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError(f"unknown consent channel {value!r} ({_choices(cls)})") from None


class Status(StrEnum):
    GIVEN = "given"
    WITHDRAWN = "withdrawn"

    @classmethod
    def parse(cls, value: str) -> Status:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError(f"unknown consent status {value!r} ({_choices(cls)})") from None


@dataclass(frozen=True)
class ConsentRecord:
    customer_id: str
    channel: Channel
    status: Status
    at: float  # epoch seconds (UTC) when consent was given or withdrawn

    def __post_init__(self) -> None:
        # Records built by hand (tests, other readers) get the same checks as parsed ones.
        object.__setattr__(self, "channel", Channel.parse(self.channel))
        object.__setattr__(self, "status", Status.parse(self.status))


class ConsentLedger:
    """Every consent record, answering "may we use this channel for this customer now?"."""

    def __init__(self, records: Iterable[ConsentRecord]) -> None:
        history: dict[tuple[str, Channel], list[tuple[float, bool]]] = {}
        for r in records:
            # (time, withdrawn): at an equal time the withdrawal sorts last, so it wins.
            key = (r.customer_id, r.channel)
            history.setdefault(key, []).append((r.at, r.status is Status.WITHDRAWN))
        for entries in history.values():
            entries.sort()
        self._history = history
        self._times = {key: [t for t, _ in entries] for key, entries in history.items()}
        self._customers = frozenset(customer for customer, _ in history)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._history.values())

    @property
    def customers(self) -> frozenset[str]:
        """Everyone with at least one record, on any channel."""
        return self._customers

    def status(self, customer_id: str, channel: Channel | str, at: float) -> Status | None:
        """The status in force at ``at`` (None: no record on this channel by then)."""
        key = (customer_id, Channel.parse(channel))
        times = self._times.get(key)
        if times is None:
            return None
        last = bisect_right(times, at)
        if last == 0:  # every record is later than ``at``
            return None
        return Status.WITHDRAWN if self._history[key][last - 1][1] else Status.GIVEN

    def allows(self, customer_id: str, channel: Channel | str, at: float) -> bool:
        """True only when the latest record by ``at`` gives consent."""
        return self.status(customer_id, channel, at) is Status.GIVEN


def _choices(enum: type[StrEnum]) -> str:
    return "expected one of " + ", ".join(m.value for m in enum)
