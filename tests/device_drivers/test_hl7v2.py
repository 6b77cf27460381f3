"""hl7v2: MLLP framing, protocols.md §2.4 example, LOINC and MDC codes, units, times, garbage."""

from datetime import UTC, datetime

import pytest

from device_drivers import encoders as enc
from device_drivers.encoders import Obx
from device_drivers.hl7v2 import Hl7v2Parser, encode_ack, parse_ts
from device_drivers.records import Quality, Vital

EXAMPLE = (
    "MSH|^~\\&|EDGE-AGENT|STATION-07|HIS|DISTRICT|20240601101500+0300||ORU^R01^ORU_R01|MSG000123|P|2.5\r"
    "PID|1||PAT-4711^^^STATION-07^MR||DOE^JANE||19800101|F\r"
    "OBR|1||OBS-889|85353-1^Vital signs panel^LN|||20240601101200+0300\r"
    "OBX|1|NM|8867-4^Heart rate^LN||97|/min^^UCUM|||||F|||20240601101200+0300\r"
    "OBX|2|NM|9279-1^Respiratory rate^LN||22|/min^^UCUM|||||F|||20240601101200+0300\r"
    "OBX|3|NM|59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN||94|%^^UCUM"
    "|||||F|||20240601101200+0300\r"
    "OBX|4|NM|8480-6^Systolic blood pressure^LN|1|118|mm[Hg]^^UCUM|||||F|||20240601101200+0300\r"
    "OBX|5|NM|8462-4^Diastolic blood pressure^LN|1|76|mm[Hg]^^UCUM|||||F|||20240601101200+0300\r"
    "OBX|6|NM|8310-5^Body temperature^LN||38.3|Cel^^UCUM|||||F|||20240601101200+0300\r"
)
WHEN = datetime(2024, 6, 1, 7, 12, tzinfo=UTC)


def test_protocols_example() -> None:
    p = Hl7v2Parser()
    out = p.feed(enc.mllp(EXAMPLE))
    assert [(m.vital, m.value) for m in out] == [
        (Vital.HEART_RATE, 97),
        (Vital.RESP_RATE, 22),
        (Vital.SPO2, 94),
        (Vital.BP_SYSTOLIC, 118),
        (Vital.BP_DIASTOLIC, 76),
        (Vital.BODY_TEMP, 38.3),
    ]
    assert all(m.measured_at == WHEN for m in out)
    assert ("obx_sub_id", "1") in out[3].extra
    (ack,) = p.take_acks()
    assert ack.control_id == "MSG000123"
    wire = encode_ack(ack, datetime(2024, 6, 1, tzinfo=UTC))
    assert wire.startswith(b"\x0bMSH|^~\\&|HIS|DISTRICT|EDGE-AGENT|STATION-07|") and wire.endswith(b"\x1c\x0d")
    assert b"\rMSA|AA|MSG000123\r" in wire


def test_mdc_codes_and_unit_conversion() -> None:
    msg = enc.hl7_oru(
        [
            Obx("150456^MDC_PULS_OXIM_SAT_O2^MDC", "93", "262688^MDC_DIM_PERCENT^MDC"),
            Obx("149530^MDC_PULS_OXIM_PULS_RATE^MDC", "112", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
            Obx("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "16.0", "kPa"),
            Obx("^MDC_TEMP_BODY^MDC", "100.4", "[degF]^^UCUM"),
            Obx("29463-7^Body weight^LN", "154", "[lb_av]"),
            Obx("2339-0^Glucose^LN", "90", "mg/dL"),
        ],
        when=WHEN,
    )
    out = Hl7v2Parser().feed(enc.mllp(msg))
    got = {m.vital: m.value for m in out}
    assert got[Vital.SPO2] == 93 and got[Vital.HEART_RATE] == 112
    assert got[Vital.BP_SYSTOLIC] == pytest.approx(120.0, abs=0.05)
    assert got[Vital.BODY_TEMP] == 38.0
    assert got[Vital.BODY_WEIGHT] == pytest.approx(69.85, abs=0.005)
    assert got[Vital.GLUCOSE] == pytest.approx(5.0, abs=0.005)


def test_rejections() -> None:
    msg = enc.hl7_oru(
        [
            Obx("8867-4^Heart rate^LN", "abc", "/min"),
            Obx("8867-4^Heart rate^LN", "80", "furlongs"),
            Obx("8867-4^Heart rate^LN", "80", "mm[Hg]"),
            Obx("8867-4^Heart rate^LN", "80", "/min", status="X"),
            Obx("11111-1^Something^LN", "1", "/min"),
            Obx("8867-4^Heart rate^LN", "900", "/min"),
        ],
        when=WHEN,
    )
    p = Hl7v2Parser()
    assert p.feed(enc.mllp(msg)) == []
    r = p.stats.rejected
    assert r["non_numeric"] == 1 and r["unknown_unit"] == 1 and r["unit_mismatch"] == 1
    assert r["result_not_obtained"] == 1 and r["unmapped_observation"] == 1 and r["out_of_range"] == 1


def test_flags_sn_and_time_fallbacks() -> None:
    msg = enc.hl7_oru(
        [
            Obx("8867-4^Heart rate^LN", "^130", "/min", value_type="SN", abnormal="H", status="P"),
            Obx("8867-4^Heart rate^LN", ">^130", "/min", value_type="SN"),
            Obx("9279-1^Respiratory rate^LN", "18", "", equipment="MON-1^X"),
        ],
        when=WHEN,
    )
    msg = msg.replace("|" + enc.hl7_ts(WHEN) + "|||", "||||")  # drop OBX-14: OBR-7 is used
    out = Hl7v2Parser().feed(enc.mllp(msg))
    hr, rr = out
    assert hr.value == 130 and {Quality.DEVICE_ALARM, Quality.QUESTIONABLE} <= hr.flags
    assert rr.measured_at == WHEN and ("unit_assumed", True) in rr.extra and ("equipment", "MON-1") in rr.extra


def test_garbage_truncated_and_non_oru() -> None:
    good = enc.mllp(EXAMPLE)
    adt = enc.mllp("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1\r")
    data = b"noise\n" + good[:40] + good + b"\r\n" + adt + b"\x0bnot hl7\x1c\x0d" + good
    p = Hl7v2Parser()
    out = p.feed(data)
    assert len(out) == 12
    r = p.stats.rejected
    assert r["truncated_frame"] == 1 and r["unsupported_message"] == 1 and r["not_hl7"] == 1
    assert r["garbage_outside_frame"] == 2


def test_bytewise_identical() -> None:
    data = b"xx" + enc.mllp(EXAMPLE) + b"\x0b\x1c" + enc.mllp(EXAMPLE)[:-1] + b"y" + enc.mllp(EXAMPLE)
    a, b = Hl7v2Parser(), Hl7v2Parser()
    out_b = []
    for i in range(len(data)):
        out_b += b.feed(data[i : i + 1])
    assert a.feed(data) == out_b and a.stats.as_dict() == b.stats.as_dict()


def test_frame_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    import device_drivers.hl7v2 as mod

    monkeypatch.setattr(mod, "MAX_FRAME", 64)
    p = Hl7v2Parser()
    assert p.feed(b"\x0b" + b"A" * 100 + b"\x1c\x0d") == []
    assert p.stats.rejected["frame_too_long"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240601101200+0300", datetime(2024, 6, 1, 7, 12, tzinfo=UTC)),
        ("202406011012", datetime(2024, 6, 1, 10, 12, tzinfo=UTC)),
        ("20240601101200.25-0130", datetime(2024, 6, 1, 11, 42, 0, 250000, tzinfo=UTC)),
        ("20240601", None),
        ("20241301101200", None),
        ("", None),
    ],
)
def test_parse_ts(text: str, expected: datetime | None) -> None:
    assert parse_ts(text) == expected
