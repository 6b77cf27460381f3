"""Bytes/s through each serial parser vs a bare scan of the same buffer (issue 3).

For each serial format a realistic stream (about 1 MB: the device's own frames, with a burst of
line noise every ~100 frames) is fed to the parser in 4096-byte reads, as the serial transport
delivers it. The baseline, measured in the same run on the same buffer, is the cheapest thing a
framer could possibly do in Python: a ``bytes.find`` loop visiting every occurrence of the
format's start byte. The ratio (parser / baseline throughput) says how much the real parsing
costs on top of merely finding frames; "x real time" compares with the device's own byte rate.

Run: .venv/bin/python benchmarks/bench_parsers.py [--megabytes N]
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_drivers import encoders as enc
from device_drivers.encoders import Obx
from device_drivers.registry import FORMATS, create_parser

CHUNK = 4096


def _noisy(frames: Callable[[int], bytes], size: int, rng: random.Random) -> bytes:
    parts: list[bytes] = []
    total = 0
    i = 0
    while total < size:
        part = frames(i)
        if i % 100 == 99:
            part = bytes(rng.randrange(256) for _ in range(16)) + part
        parts.append(part)
        total += len(part)
        i += 1
    return b"".join(parts)


def stream_for(name: str, size: int) -> tuple[bytes, bytes, float]:
    """(stream, start byte for the baseline, the device's own bytes per second)."""
    rng = random.Random(7)
    if name == "nonin-format2":
        return _noisy(lambda i: enc.nonin_packet(70 + i % 20, 95 + i % 5), size, rng), b"\x01", 75 * 5
    if name == "contec-cms50":
        return _noisy(lambda i: enc.contec_packet(70 + i % 20, 95 + i % 5), size, rng), b"\x84", 60 * 5
    if name == "hl7v2":

        def oru(i: int) -> bytes:
            return enc.mllp(
                enc.hl7_oru(
                    [
                        Obx("8867-4^Heart rate^LN", str(70 + i % 20), "/min^^UCUM"),
                        Obx("9279-1^Respiratory rate^LN", "16", "/min^^UCUM"),
                        Obx("59408-5^SpO2^LN", "96", "%^^UCUM"),
                        Obx("8480-6^Systolic^LN", "120", "mm[Hg]^^UCUM", sub_id="1"),
                        Obx("8462-4^Diastolic^LN", "80", "mm[Hg]^^UCUM", sub_id="1"),
                        Obx("8310-5^Body temperature^LN", "37.1", "Cel^^UCUM"),
                    ],
                    control_id=f"M{i}",
                    when=None,
                )
            )

        one = oru(0)
        return _noisy(oru, size, rng), b"\x0b", len(one) / 12.0  # one ORU every 12 s
    if name == "masimo-ascii":
        from device_drivers.masimo_ascii import encode_line

        one = encode_line()
        return (
            _noisy(lambda i: encode_line(spo2=95 + i % 5, bpm=70 + i % 20), size, rng),
            b"\n",
            float(len(one)),
        )
    raise KeyError(name)


def time_parser(name: str, data: bytes) -> tuple[float, int]:
    parser = create_parser(name)
    readings = 0
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        readings += len(parser.feed(data[i : i + CHUNK]))
    return time.perf_counter() - start, readings


def time_baseline(data: bytes, start_byte: bytes) -> tuple[float, int]:
    found = 0
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        chunk = data[i : i + CHUNK]
        j = chunk.find(start_byte)
        while j >= 0:
            found += 1
            j = chunk.find(start_byte, j + 1)
    return time.perf_counter() - start, found


def hostile_for(name: str, size: int, rng: random.Random) -> bytes:
    """Worst cases seen in hardening (issue 8): a run of MLLP start bytes for hl7v2 (was quadratic),
    a line that never ends for masimo-ascii, random bytes for the binary formats."""
    if name == "hl7v2":
        return b"\x0b" * size
    if name == "masimo-ascii":
        return b"SPO2=" * (size // 5)
    return rng.randbytes(size)


def best(fn: Callable[[], tuple[float, int]], repeat: int) -> tuple[float, int]:
    runs = [fn() for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--megabytes", type=float, default=1.0, help="stream size per format (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = ap.parse_args(argv)
    size = int(args.megabytes * 1_000_000)
    names = [n for n in ("nonin-format2", "contec-cms50", "hl7v2", "masimo-ascii") if n in FORMATS]
    print(f"{'format':<15} {'parser MB/s':>11} {'baseline MB/s':>13} {'ratio':>7} {'readings':>9} {'x real time':>12}")
    for name in names:
        try:
            data, start_byte, device_rate = stream_for(name, size)
            t_parser, readings = best(functools.partial(time_parser, name, data), args.repeat)
        except ImportError as exc:  # a format whose parser is not there yet
            print(f"{name:<15} skipped: {exc}")
            continue
        t_base, _ = best(functools.partial(time_baseline, data, start_byte), args.repeat)
        parser_bps = len(data) / t_parser
        base_bps = len(data) / t_base
        print(
            f"{name:<15} {parser_bps / 1e6:>11.2f} {base_bps / 1e6:>13.2f} {parser_bps / base_bps:>7.3f} "
            f"{readings:>9} {parser_bps / device_rate:>12,.0f}"
        )
    print(
        "ratio = parser throughput / bare bytes.find scan of the same buffer (same run); "
        "x real time = parser throughput / the device's own byte rate"
    )
    print(f"\n{'hostile input':<15} {'parser MB/s':>11} {'vs clean':>9} {'readings':>9}")
    rng = random.Random(8)
    for name in names:
        clean, _, _ = stream_for(name, size)
        t_clean, _ = best(functools.partial(time_parser, name, clean), args.repeat)
        bad = hostile_for(name, size, rng)
        t_bad, readings = best(functools.partial(time_parser, name, bad), args.repeat)
        bad_bps, clean_bps = len(bad) / t_bad, len(clean) / t_clean
        print(f"{name:<15} {bad_bps / 1e6:>11.2f} {bad_bps / clean_bps:>9.2f} {readings:>9}")
    print("vs clean = hostile-input throughput / the same parser on its clean stream (same run); linear stays near 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
