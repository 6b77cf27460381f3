"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

Full jitter draws each delay uniformly from [0, min(cap, base * 2**attempt)], so a thousand
gateways (or devices) that lost their peer at the same instant do not all return in the same
second. Used for serial and BLE reconnects, and for the MQTT reconnect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt`` (0-based), without changing state."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return (rng or self.rng).uniform(0.0, ceiling)

    def next_delay(self) -> float:
        """The delay before the next retry; counts the attempt."""
        value = self.delay(self.attempt)
        self.attempt += 1
        return value

    def reset(self) -> None:
        """After a success: the next failure starts from ``base`` again."""
        self.attempt = 0
