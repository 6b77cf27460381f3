"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

Full jitter draws each delay uniformly from [0, min(cap, base * 2**attempt)], so a thousand
gateways (or devices) that lost their peer at the same instant do not all return in the same
second. Used for device reconnects and, later, MQTT reconnects.
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

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
