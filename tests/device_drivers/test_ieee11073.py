"""IEEE 11073 SFLOAT/FLOAT and Date Time: protocols.md §1.2 worked examples (HL7-PHD tables)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers import encoders as enc
from device_drivers.ieee11073 import (
    FLOAT_SPECIAL,
    SFLOAT_SPECIAL,
    SpecialValue,
    decode_date_time,
    decode_float,
    decode_sfloat,
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [(0x0002, 2.0), (0xF014, 2.0), (0xE0C8, 2.0), (0x1002, 20.0), (0x0B2E, -1234.0)],
)
def test_sfloat_worked_examples(raw: int, value: float) -> None:
    assert decode_sfloat(raw) == value


def test_sfloat_keeps_decimal_exactness() -> None:
    assert decode_sfloat(0xF014) == 2.0  # not 2.0000000000000004
    assert decode_sfloat(enc.sfloat_raw(189, -1)) == 18.9


@pytest.mark.parametrize(("raw", "value"), [(0xFF000014, 2.0), (0x00FFFB2E, -1234.0), (0xFE000EB0, 37.6)])
def test_float_worked_examples(raw: int, value: float) -> None:
    assert decode_float(raw) == value


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x07FF, SpecialValue.NAN),
        (0x0800, SpecialValue.NRES),
        (0x07FE, SpecialValue.POSITIVE_INFINITY),
        (0x0802, SpecialValue.NEGATIVE_INFINITY),
        (0x0801, SpecialValue.RESERVED),
    ],
)
def test_sfloat_special_values(raw: int, special: SpecialValue) -> None:
    assert decode_sfloat(raw) is special


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x007FFFFF, SpecialValue.NAN),
        (0x00800000, SpecialValue.NRES),
        (0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
        (0x00800002, SpecialValue.NEGATIVE_INFINITY),
        (0x00800001, SpecialValue.RESERVED),
    ],
)
def test_float_special_values(raw: int, special: SpecialValue) -> None:
    assert decode_float(raw) is special


def test_nxp_32bit_constants_are_ordinary_numbers() -> None:
    # protocols.md §1.2: NXP's 0x07FFFFFF is not a special value (exponent 7, mantissa -1).
    assert decode_float(0x07FFFFFF) == -1 * 10**7


@settings(max_examples=300, deadline=None)
@given(st.integers(-2048, 2047), st.integers(-8, 7))
def test_sfloat_round_trip(mantissa: int, exponent: int) -> None:
    raw = enc.sfloat_raw(mantissa, exponent)
    decoded = decode_sfloat(raw)
    if raw in SFLOAT_SPECIAL:
        assert isinstance(decoded, SpecialValue)
    else:
        assert decoded == pytest.approx(mantissa * 10.0**exponent)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 23), (1 << 23) - 1), st.integers(-20, 20))
def test_float_round_trip(mantissa: int, exponent: int) -> None:
    raw = enc.float32_raw(mantissa, exponent)
    decoded = decode_float(raw)
    if raw in FLOAT_SPECIAL:
        assert isinstance(decoded, SpecialValue)
    else:
        assert decoded == pytest.approx(mantissa * 10.0**exponent)


def test_date_time_decodes_and_converts_to_utc() -> None:
    raw = bytes([0xE8, 0x07, 6, 1, 10, 12, 0])  # 2024-06-01 10:12:00
    assert decode_date_time(raw).value == datetime(2024, 6, 1, 10, 12, tzinfo=UTC)
    plus7 = timezone(timedelta(hours=7))
    assert decode_date_time(raw, plus7).value == datetime(2024, 6, 1, 3, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        bytes(7),
        bytes([0, 0, 6, 1, 10, 0, 0]),
        bytes([0xE8, 0x07, 0, 1, 0, 0, 0]),
        bytes([0xE8, 0x07, 6, 0, 0, 0, 0]),
    ],
)
def test_date_time_unknown(raw: bytes) -> None:
    field = decode_date_time(raw)
    assert field.value is None and field.valid


def test_date_time_impossible() -> None:
    field = decode_date_time(bytes([0xE8, 0x07, 13, 40, 25, 61, 61]))
    assert field.value is None and not field.valid


def test_date_time_round_trip() -> None:
    dt = datetime(2026, 11, 23, 18, 30, 5, tzinfo=UTC)
    assert decode_date_time(enc.date_time(dt)).value == dt
