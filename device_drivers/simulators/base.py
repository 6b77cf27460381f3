"""Device simulators that speak real formats over real pseudo-terminals.

A simulator owns a pty pair (``os.openpty``). The agent opens the slave side exactly as it would
open ``/dev/ttyUSB0``: through a stable symlink (``link``), like ``/dev/serial/by-id/...``.
``unplug()`` closes the pty, so the reader sees the hang-up a pulled USB cable causes;
``replug()`` makes a new pty and points the same symlink at it.

Each format module supplies a *frame source*: a function from a scenario's patient state to the
bytes the device would send for it, at the device's own pace. Scenarios describe the patient,
not the bytes, so one "desaturation" script drives every oximeter format alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import random
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = (
    "normal",
    "desaturation",
    "tachycardia",
    "bradycardia",
    "fever",
    "hypothermia",
    "hypertension",
    "probe_off",
    "garbage_burst",
    "unplug_replug",
    "child_unwell",
    "pregnancy_hypertension",
)


@dataclass(frozen=True, slots=True)
class PatientState:
    """What the simulated patient's vital signs are at one instant (one per second)."""

    t: float
    spo2: float = 97.0
    heart_rate: float = 72.0
    perfusion_index: float = 2.4
    resp_rate: float = 16.0
    body_temp: float = 36.8
    bp_systolic: float = 122.0
    bp_diastolic: float = 78.0
    probe_off: bool = False
    garbage: bool = False  # emit a burst of line noise before this second's frame
    unplug: bool = False  # the cable is pulled for this second


# Scenario timing: (cycle, event start, event end), seconds of device time. Most scenarios use a
# 60 s cycle with a 32 s event. Tachycardia and bradycardia are *sustained* events: the agent's
# detector wants the rate beyond its threshold for 60 s (scoring tachycardia_s / bradycardia_s,
# models/events.py) with samples at most 15 s apart, so their event lasts 112 s of a 180 s cycle
# (about 108 s beyond the threshold after the 4 s ramp): long enough to raise the alert with
# margin, and it still recovers and repeats in a long demo.
SCENARIO_TIMING: dict[str, tuple[int, int, int]] = {
    "tachycardia": (180, 8, 120),
    "bradycardia": (180, 8, 120),
}
DEFAULT_TIMING = (60, 8, 40)

# The demo's two people who are not ordinary adults (edge_agent.scoring.demo_people): a child of
# 1-4 years (normal rates for that age at baseline; then fast breathing, tachycardia for age,
# hypoxaemia and fever: PEWS, WHO IMCI referral flags) and a pregnant woman (normal BP, then
# hypertension to recheck, then severe hypertension). (baseline, unwell) per vital.
CHILD_HR, CHILD_RR, CHILD_SPO2, CHILD_TEMP = (110.0, 150.0), (28.0, 48.0), (98.0, 88.0), (37.0, 38.6)
CHILD_BP = (95.0, 60.0)
PREGNANCY_BP = ((118.0, 74.0), (146.0, 94.0), (164.0, 112.0))  # normal; >= 140/90 recheck; >= 160/110 severe


def _towards(pair: tuple[float, float], ramp: float) -> float:
    """From baseline (ramp 0) to the unwell value (ramp 1), one decimal."""
    return round(pair[0] + ramp * (pair[1] - pair[0]), 1)


def patient_timeline(scenario: str, seed: int = 0) -> Iterator[PatientState]:
    """An endless 1 Hz timeline for ``scenario``; deterministic for a seed.

    Each cycle (:data:`SCENARIO_TIMING`, 60 s by default) has about 8 s of baseline, then the
    event, then recovery, so a short demo run sees the event early and a long one sees it repeat.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    rng = random.Random(seed)
    cycle, start, stop = SCENARIO_TIMING.get(scenario, DEFAULT_TIMING)
    t = 0
    while True:
        phase = t % cycle
        event = start <= phase < stop  # the event window of each cycle
        ramp = min(1.0, (phase - start) / 4) if event else 0.0  # 4 s ramp into the event
        s = PatientState(
            t=float(t),
            spo2=round(97 + rng.uniform(-1, 1)),
            heart_rate=round(72 + 3 * math.sin(t / 7) + rng.uniform(-2, 2)),
            perfusion_index=round(2.4 + rng.uniform(-0.3, 0.3), 2),
            resp_rate=round(16 + rng.uniform(-1, 1)),
            body_temp=round(36.8 + rng.uniform(-0.1, 0.1), 1),
            bp_systolic=round(122 + rng.uniform(-4, 4)),
            bp_diastolic=round(78 + rng.uniform(-3, 3)),
        )
        if scenario == "desaturation" and event:
            s = dataclasses.replace(s, spo2=round(s.spo2 - ramp * 12), heart_rate=round(s.heart_rate + ramp * 18))
        elif scenario == "tachycardia" and event:
            s = dataclasses.replace(s, heart_rate=round(s.heart_rate + ramp * 66))
        elif scenario == "bradycardia" and event:
            s = dataclasses.replace(s, heart_rate=round(s.heart_rate - ramp * 34))
        elif scenario == "fever" and event:
            s = dataclasses.replace(s, body_temp=round(s.body_temp + ramp * 2.7, 1), heart_rate=s.heart_rate + 20)
        elif scenario == "hypothermia" and event:
            s = dataclasses.replace(s, body_temp=round(s.body_temp - ramp * 2.6, 1), heart_rate=s.heart_rate - 12)
        elif scenario == "hypertension" and event:
            s = dataclasses.replace(
                s, bp_systolic=s.bp_systolic + round(ramp * 66), bp_diastolic=s.bp_diastolic + round(ramp * 36)
            )
        elif scenario == "child_unwell":
            s = dataclasses.replace(
                s,
                heart_rate=_towards(CHILD_HR, ramp),
                resp_rate=_towards(CHILD_RR, ramp),
                spo2=_towards(CHILD_SPO2, ramp),
                body_temp=_towards(CHILD_TEMP, ramp),
                bp_systolic=CHILD_BP[0],
                bp_diastolic=CHILD_BP[1],
            )
        elif scenario == "pregnancy_hypertension":
            sbp, dbp = PREGNANCY_BP[0 if not event else 1 if phase < start + 12 else 2]
            s = dataclasses.replace(s, heart_rate=88.0, bp_systolic=sbp, bp_diastolic=dbp)
        elif scenario == "probe_off" and 10 <= phase < 20:
            s = dataclasses.replace(s, probe_off=True)
        elif scenario == "garbage_burst" and phase % 7 == 3:
            s = dataclasses.replace(s, garbage=True)
        elif scenario == "unplug_replug" and 15 <= phase < 20:
            s = dataclasses.replace(s, unplug=True)
        yield s
        t += 1


# A frame source turns one second of patient state into (delay before, bytes) chunks covering
# that second: a 1 Hz device yields one chunk, a 75 frame/s device yields 75.
FrameSource = Callable[[PatientState, random.Random], Iterator[tuple[float, bytes]]]


def garbage_bytes(rng: random.Random, n: int = 40) -> bytes:
    """Line noise: random bytes, as a loose connector or a baud-rate mismatch produces."""
    return bytes(rng.randrange(256) for _ in range(n))


class PtySimulator:
    """Runs a frame source over a pseudo-terminal in a background thread.

    ``speed`` compresses time for tests (2.0 = twice the device's real pace). The stable path
    for the agent is :attr:`link`; :attr:`slave_path` changes on every replug.
    """

    def __init__(
        self,
        frames: FrameSource,
        *,
        scenario: str = "normal",
        link: Path,
        speed: float = 1.0,
        seed: int = 0,
        name: str = "simulator",
    ) -> None:
        self._frames = frames
        self.scenario = scenario
        self.link = Path(link)
        self.speed = speed
        self.name = name
        self._rng = random.Random(seed)
        self._seed = seed
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes_sent = 0
        self.received = bytearray()
        self.frames_sent = 0
        self.plugged = False
        self._scripted_unplug = False  # the scenario (not a test) pulled the cable

    # -- the cable ------------------------------------------------------------------------------
    def replug(self) -> None:
        """Create a new pty and point :attr:`link` at it (first plug-in or after unplug)."""
        with self._lock:
            self._scripted_unplug = False
            if self.plugged:
                return
            master, slave = os.openpty()
            # Raw mode on the slave so the line discipline never cooks device bytes (CR->LF,
            # echo) before the agent's pyserial opens the port and sets raw mode itself.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self.slave_path = os.ttyname(slave)
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            tmp.replace(self.link)
            self.plugged = True

    def unplug(self) -> None:
        """Pull the cable: the symlink disappears and the open port hangs up."""
        with self._lock:
            if not self.plugged:
                return
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
            self.plugged = False

    def write(self, data: bytes) -> None:
        """Send bytes now; dropped when unplugged or when nobody drains the port (like a UART).

        Bytes the host sent to the device (HL7 ACKs, start commands) are drained first, so the
        host's writes never block; the last 64 KiB of them are kept in :attr:`received`.
        """
        with self._lock:
            if self._master is None:
                return
            self._drain()
            try:
                self.bytes_sent += os.write(self._master, data)
            except BlockingIOError:
                pass
            except OSError as exc:  # EIO: the slave side is gone
                if exc.errno != errno.EIO:
                    raise

    def _drain(self) -> None:
        assert self._master is not None
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.received += chunk
            del self.received[:-65536]

    # -- running --------------------------------------------------------------------------------
    def start(self) -> PtySimulator:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.replug()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()

    def __enter__(self) -> PtySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sleep(self, seconds: float) -> bool:
        """Sleep in device time; False when asked to stop."""
        return not self._stop.wait(seconds / self.speed)

    def _run(self) -> None:
        next_at = time.monotonic()
        for state in patient_timeline(self.scenario, self._seed):
            if self._stop.is_set():
                return
            if state.unplug and self.plugged:
                self.unplug()
                self._scripted_unplug = True
            elif not state.unplug and self._scripted_unplug:
                self.replug()
            if state.garbage:
                self.write(garbage_bytes(self._rng))
            for delay, chunk in self._frames(state, self._rng):
                next_at += delay / self.speed
                pause = next_at - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
                if self.plugged:
                    self.write(chunk)
                    self.frames_sent += 1
