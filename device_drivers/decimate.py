"""Once-per-window emission for oximeter streams that report many times a second.

Nonin format 2 gives a complete value set three times a second and the Contec legacy stream
about sixty times; storing each would flood the buffer with near-identical readings. A
:class:`Decimator` splits the stream into windows of ``size`` packets (counted, not timed, so
the result depends only on the bytes and never on how they were chunked). In each window the
first usable value of each vital is emitted, carrying the quality flags seen so far in that
window; if a vital has no usable value when a packet says why (probe off, missing value), the
reason is counted once per window, not once per packet.
"""

from __future__ import annotations

from device_drivers.records import Quality, Vital


class Decimator:
    __slots__ = ("count", "emitted", "flags", "rejected", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.emitted: set[Vital] = set()
        self.rejected: set[Vital] = set()
        self.flags: set[Quality] = set()

    def next_packet(self, flags: set[Quality]) -> None:
        """Start accounting for one more packet (call once per packet, before offering values)."""
        if self.count % self.size == 0:
            self.emitted.clear()
            self.rejected.clear()
            self.flags.clear()
        self.count += 1
        self.flags |= flags

    def wants(self, vital: Vital) -> bool:
        return vital not in self.emitted

    def mark_emitted(self, vital: Vital) -> None:
        self.emitted.add(vital)

    def should_count_rejection(self, vital: Vital) -> bool:
        """True the first time a vital is unusable in this window (and nothing was emitted)."""
        if vital in self.emitted or vital in self.rejected:
            return False
        self.rejected.add(vital)
        return True
