"""Bilingual texts of the scores (Vietnamese first, then English): parameter names, levels,
the response each source prescribes, and the notes a score carries. Pure data and formatting.

Responses are paraphrased from the sources cited in models/ (NEWS2: RCP 2017 charts 2/3,
clinical.md section 3.2; PEWS: the SPOT NPEWS escalation table, rcpch/digital-pews
spec/escalation.md; IMCI and pregnancy: clinical.md sections 6.2, 6.3).
"""

from __future__ import annotations

from collections.abc import Iterable

# parameter -> (vi, en)
PARAMETER_NAMES: dict[str, tuple[str, str]] = {
    "resp_rate": ("nhịp thở", "respiration rate"),
    "spo2": ("SpO2", "SpO2"),
    "air_oxygen": ("thở oxy hay khí trời", "air or oxygen"),
    "on_oxygen": ("đang thở", "breathing"),  # an input: "đang thở khí trời" / "breathing air"
    "bp_systolic": ("huyết áp tâm thu", "systolic BP"),
    "bp_diastolic": ("huyết áp tâm trương", "diastolic BP"),
    "heart_rate": ("nhịp tim", "heart rate"),
    "consciousness": ("ý thức", "consciousness"),
    "body_temp": ("nhiệt độ", "temperature"),
    "resp_distress": ("mức độ suy hô hấp", "respiratory distress"),
    "o2_support": ("hỗ trợ oxy", "oxygen support"),
    "o2_flow": ("lưu lượng oxy", "oxygen flow"),
    "cap_refill": ("thời gian đổ đầy mao mạch", "capillary refill time"),
}
UNITS: dict[str, str] = {
    "resp_rate": "/min",
    "spo2": "%",
    "bp_systolic": "mmHg",
    "bp_diastolic": "mmHg",
    "heart_rate": "/min",
    "body_temp": "°C",
    "o2_flow": "L/min",
    "cap_refill": "s",
}
# the Vietnamese of a unit, where it differs ("24 lần/phút": breaths or beats per minute)
UNITS_VI: dict[str, str] = {"/min": "lần/phút", "L/min": "lít/phút", "s": "giây"}

# Notes a score carries (codes for the dashboard; texts for messages).
NOTES: dict[str, tuple[str, str]] = {
    "age_not_recorded": ("chưa ghi tuổi: dùng NEWS2 của người lớn", "age not recorded: adult NEWS2 used"),
    "not_validated_in_pregnancy": (
        "NEWS2 chưa được thẩm định cho phụ nữ có thai",
        "NEWS2 is not validated in pregnancy",
    ),
    "pews_not_validated_prehospital": (
        "PEWS chưa được thẩm định ngoài bệnh viện: dùng để quyết định chuyển tuyến",
        "PEWS is not validated before hospital: use it to guide referral",
    ),
    "think_sepsis": (
        "nhiệt độ ≥ 38 hoặc < 36 °C: nghĩ đến nhiễm khuẩn huyết",
        "temperature ≥ 38 or < 36 °C: think sepsis",
    ),
}

NEWS2_LEVELS: dict[str, tuple[str, str]] = {
    "none": ("không", "none"),
    "low": ("thấp", "low"),
    "low-medium": ("thấp–trung bình", "low-medium"),
    "medium": ("trung bình", "medium"),
    "high": ("cao", "high"),
}
NEWS2_RESPONSE: dict[str, tuple[str, str]] = {
    "low": (
        "điều dưỡng đánh giá, quyết định tăng theo dõi (mỗi 4–6 giờ) hay báo bác sĩ",
        "a registered nurse assesses and decides whether to monitor more often (every 4–6 h) or escalate",
    ),
    "low-medium": (
        "theo dõi ít nhất mỗi giờ; báo bác sĩ để đánh giá khẩn",
        "monitor at least hourly; inform the medical team for an urgent ward-based review",
    ),
    "medium": (
        "báo ngay bác sĩ; người có năng lực xử trí cấp cứu đánh giá khẩn; theo dõi ít nhất mỗi giờ",
        "urgent response: inform the medical team at once; urgent assessment by a clinician competent "
        "in acute illness; monitor at least hourly",
    ),
    "high": (
        "cấp cứu: nhóm có năng lực hồi sức (cả đường thở) đánh giá ngay; theo dõi liên tục; cân nhắc chuyển tuyến",
        "emergency response: immediate review by a team with critical-care skills (incl. airway); "
        "continuous monitoring; consider transfer",
    ),
}

PEWS_LEVELS: dict[str, tuple[str, str]] = {
    "none": ("không", "none"),
    "low": ("thấp", "low"),
    "medium": ("trung bình", "medium"),
    "high": ("cao", "high"),
    "emergency": ("cấp cứu", "emergency"),
}
PEWS_RESPONSE: dict[str, tuple[str, str]] = {
    "low": (
        "báo điều dưỡng phụ trách; đánh giá lại trong 60 phút",
        "inform the nurse in charge; reassess within 60 minutes",
    ),
    "medium": (
        "bác sĩ khám trong 30 phút; đánh giá lại trong 30 phút; theo dõi SpO2 liên tục",
        "medical review within 30 minutes; reassess within 30 minutes; continuous SpO2 monitoring",
    ),
    "high": (
        "khám ngay trong 15 phút bởi người có kỹ năng đường thở; chuẩn bị chuyển tuyến",
        "rapid review within 15 minutes by someone with airway skills; prepare referral",
    ),
    "emergency": (
        "cấp cứu nhi ngay lập tức; chuyển tuyến cấp cứu",
        "immediate paediatric emergency response; emergency referral",
    ),
}

IMCI_TEXT: dict[str, tuple[str, str, str, str]] = {
    # kind -> (vi title, en title, vi response, en response)
    "fast_breathing": (
        "thở nhanh theo tuổi (WHO IMCI)",
        "fast breathing for age (WHO IMCI)",
        "đếm lại đủ 1 phút khi trẻ nằm yên; đánh giá và chuyển tuyến theo IMCI",
        "recount for a full minute with the child calm; assess and refer as IMCI says",
    ),
    "hypoxaemia": (
        "giảm oxy máu (WHO)",
        "hypoxaemia (WHO)",
        "cho thở oxy và chuyển tuyến khẩn",
        "give oxygen and refer urgently",
    ),
    "young_infant_temperature": (
        "trẻ dưới 2 tháng, nhiệt độ bất thường: có thể nhiễm khuẩn nặng (WHO)",
        "young infant (< 2 months), abnormal temperature: possible serious bacterial infection (WHO)",
        "chuyển tuyến khẩn",
        "refer urgently",
    ),
}

PREGNANCY_TEXT: dict[str, tuple[str, str, str, str]] = {
    "hypertension-in-pregnancy": (
        "tăng huyết áp thai kỳ (≥ 140/90)",
        "hypertension in pregnancy (≥ 140/90)",
        "đo lại sau ít nhất 4 giờ để xác nhận",
        "recheck at least 4 h later to confirm",
    ),
    "severe-hypertension-in-pregnancy": (
        "tăng huyết áp nặng thai kỳ (≥ 160/110)",
        "severe hypertension in pregnancy (≥ 160/110)",
        "cần điều trị khẩn và chuyển tuyến ngay, không chờ lần đo thứ hai",
        "urgent treatment and referral now; do not wait for a second reading",
    ),
}

EVENT_NAMES: dict[str, str] = {
    "desaturation": "giảm SpO2",
    "tachycardia": "nhịp tim nhanh",
    "bradycardia": "nhịp tim chậm",
    "fever": "sốt",
    "hypothermia": "hạ thân nhiệt",
}
EVENT_NAMES_EN: dict[str, str] = {
    "desaturation": "desaturation",
    "tachycardia": "tachycardia",
    "bradycardia": "bradycardia",
    "fever": "fever",
    "hypothermia": "hypothermia",
}
OP_SIGNS: dict[str, str] = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
# why an alert closed (edge_agent.scoring.lifecycle) -> Vietnamese
CLEAR_REASONS: dict[str, str] = {
    "resolved": "đã hết",
    "stale: no values": "không còn số đo",
    "does not apply: age band or pregnancy changed": "không còn áp dụng: nhóm tuổi hoặc thai kỳ đã thay đổi",
}


def names(params: Iterable[str], lang: int) -> str:
    """Comma-separated parameter names; lang 0 = Vietnamese, 1 = English."""
    return ", ".join(PARAMETER_NAMES.get(p, (p, p))[lang] for p in params)


def cap(text: str) -> str:
    """First letter upper case, the rest untouched (``str.capitalize`` would turn SpO2 into spo2)."""
    return text[:1].upper() + text[1:]


# coded observations shown as words: param -> one (vi, en) per code 0, 1, ...
CODED: dict[str, tuple[tuple[str, str], ...]] = {
    "on_oxygen": (("khí trời", "air"), ("oxy", "oxygen")),
    "o2_high_flow": (("không", "no"), ("có", "yes")),
    "resp_distress": (("không", "none"), ("nhẹ", "mild"), ("vừa", "moderate"), ("nặng", "severe")),
}


def value(param: str, v: float, lang: int = 1) -> str:
    """A value with the device's precision and its unit (``35.05 °C``, ``85 %``, ``24 /min`` or in
    Vietnamese ``24 lần/phút``); ACVPU as its letter, coded observations as words."""
    if param == "consciousness" and v in (0.0, 1.0, 2.0, 3.0, 4.0):
        return "ACVPU"[int(v)]
    words = CODED.get(param)
    if words is not None and float(v).is_integer() and 0 <= int(v) < len(words):
        return words[int(v)][lang]
    shown = f"{v:g}"
    shown_unit = unit(param, lang)
    return f"{shown} {shown_unit}" if shown_unit else shown


def unit(param: str, lang: int = 1) -> str | None:
    """The unit a parameter's value is shown with, in Vietnamese (lang 0) or English (1)."""
    u = UNITS.get(param)
    return UNITS_VI.get(u, u) if u is not None and lang == 0 else u


def inputs_text(inputs: Iterable[tuple[str, float]], lang: int) -> str:
    return ", ".join(f"{PARAMETER_NAMES.get(p, (p, p))[lang]} {value(p, v, lang)}" for p, v in inputs)


def bound(total: int, partial: bool, missing: Iterable[str]) -> tuple[str, str]:
    """``("≥ 3, chưa đủ: nhịp thở, ý thức", "at least 3, missing: respiration rate, consciousness")``."""
    miss = list(missing)
    if not partial:
        return str(total), str(total)
    vi = f"≥ {total}" + (f", chưa đủ: {names(miss, 0)}" if miss else "")
    en = f"at least {total}" + (f", missing: {names(miss, 1)}" if miss else "")
    return vi, en


def notes_text(codes: Iterable[str], lang: int) -> str:
    return "; ".join(NOTES[c][lang] for c in codes if c in NOTES)


def event_text(kind: str, vital: str, op: str, threshold: float, held_s: float | None, worst: float) -> str:
    """A sustained event's alert text, "Vietnamese / English" like the scores' (the dashboard
    shows its language's half): ``Giảm SpO2: SpO2 < 90 % trong 12 giây (thấp nhất 88 %) /
    Desaturation: SpO2 < 90 % for 12 s (lowest 88 %)``. ``held_s`` None: a one-reading rule."""
    sign = OP_SIGNS.get(op, op)
    lowest = op in ("<", "<=")
    vi_name, en_name = PARAMETER_NAMES.get(vital, (vital, vital))
    vi = f"{cap(EVENT_NAMES.get(kind, kind))}: {vi_name} {sign} {value(vital, threshold, 0)}"
    en = f"{cap(EVENT_NAMES_EN.get(kind, kind))}: {en_name} {sign} {value(vital, threshold, 1)}"
    if held_s is not None:
        vi += f" trong {held_s:.0f} giây"
        en += f" for {held_s:.0f} s"
    vi += f" ({'thấp' if lowest else 'cao'} nhất {value(vital, worst, 0)})"
    en += f" ({'lowest' if lowest else 'highest'} {value(vital, worst, 1)})"
    return bilingual(vi, en)


def event_resolved_text(kind: str, vital: str, last: float) -> str:
    """The text of an event whose condition no longer holds: ``SpO2 95 %: hết giảm SpO2 / SpO2
    95 %: desaturation resolved``."""
    vi_name, en_name = PARAMETER_NAMES.get(vital, (vital, vital))
    return bilingual(
        f"{cap(vi_name)} {value(vital, last, 0)}: hết {EVENT_NAMES.get(kind, kind)}",
        f"{cap(en_name)} {value(vital, last, 1)}: {EVENT_NAMES_EN.get(kind, kind)} resolved",
    )


def threshold_text(threshold: str, lang: int) -> str:
    """A threshold as a source prints it (``>= 50 /min``) in the message's language:
    ``≥ 50 lần/phút`` / ``≥ 50 /min``."""
    out = threshold.replace(">=", "≥").replace("<=", "≤")
    if lang == 0:
        for en, vi in UNITS_VI.items():
            if en != "s":
                out = out.replace(f" {en}", f" {vi}")
    return out


# An alert text is "Vietnamese / English": the dashboard shows the half of its language, so each
# half must be whole and the separator appear exactly once (tests/edge_agent/scoring/test_scoring_texts.py).
SEPARATOR = " / "


def bilingual(vi: str, en: str) -> str:
    """One alert text from its Vietnamese and English halves."""
    return f"{vi}{SEPARATOR}{en}"


def cleared_text(reason: str, message: str, *, now: bool) -> str:
    """A closed alert's text, still "Vietnamese / English" when ``message`` is: ``Đã đóng (đã
    hết): … / cleared (resolved): now …``. ``now``: ``message`` is the finding that closed it."""
    parts = message.split(SEPARATOR)
    vi_reason = CLEAR_REASONS.get(reason, reason)
    if len(parts) != 2:
        return f"cleared ({reason}): {'now ' if now else ''}{message}"
    vi_now, en_now = ("hiện ", "now ") if now else ("", "")
    return bilingual(f"Đã đóng ({vi_reason}): {vi_now}{parts[0]}", f"cleared ({reason}): {en_now}{parts[1]}")
