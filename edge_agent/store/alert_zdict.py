"""The preset dictionary of alert payloads (issue 14), part of the file format: never edit it.

An alert record is about 1.2 KB of JSON, most of it the bilingual message built from the texts
in ``edge_agent.scoring.labels``; plain zlib level 9 made it about 750 B, two 512 B pages with an
overflow page, and every revision rewrites it. Compressed against this dictionary (zlib's
preset dictionary, RFC 1950 section 2.2: the stream carries the dictionary's Adler-32 in its
header) it is 200-370 B and fits one page (measured on the demo's alerts: 790 -> 303 B, 977 -> 372 B).

The text is a frozen copy of the labels' texts as they were when it was made (2026-12-01) and
an alert record's skeleton at the end (zlib codes nearer matches in fewer bits). When the labels
change, alerts still compress, a little less well; a better dictionary is a new constant with a
new id, and every id ever written stays readable (``codec.alert_from_plaintext``).
"""

from __future__ import annotations

import zlib

ALERT_ZDICT_1 = (
    "resolved / đã hết / stale: no values / không còn số đo / does not apply: age band or "
    "pregnancy changed / không còn áp dụng: nhóm tuổi hoặc thai kỳ đã thay đổi / on_oxygen / "
    "khí trời / oxygen / o2_high_flow / không / resp_distress / none / mild / moderate / "
    "nặng / severe / desaturation / giảm SpO2 / tachycardia / nhịp tim nhanh / bradycardia / "
    "nhịp tim chậm / fever / hypothermia / hạ thân nhiệt / fast_breathing / thở nhanh theo "
    "tuổi (WHO IMCI) / fast breathing for age (WHO IMCI) / đếm lại đủ 1 phút khi trẻ nằm "
    "yên; đánh giá và chuyển tuyến theo IMCI / recount for a full minute with the child "
    "calm; assess and refer as IMCI says / hypoxaemia / giảm oxy máu (WHO) / hypoxaemia "
    "(WHO) / cho thở oxy và chuyển tuyến khẩn / give oxygen and refer urgently / "
    "young_infant_temperature / trẻ dưới 2 tháng, nhiệt độ bất thường: có thể nhiễm khuẩn "
    "nặng (WHO) / young infant (< 2 months), abnormal temperature: possible serious "
    "bacterial infection (WHO) / chuyển tuyến khẩn / refer urgently / thấp / low-medium / "
    "thấp–trung bình / medium / trung bình / high / điều dưỡng đánh giá, quyết định tăng "
    "theo dõi (mỗi 4–6 giờ) hay báo bác sĩ / a registered nurse assesses and decides whether "
    "to monitor more often (every 4–6 h) or escalate / theo dõi ít nhất mỗi giờ; báo bác sĩ "
    "để đánh giá khẩn / monitor at least hourly; inform the medical team for an urgent "
    "ward-based review / báo ngay bác sĩ; người có năng lực xử trí cấp cứu đánh giá khẩn; "
    "theo dõi ít nhất mỗi giờ / urgent response: inform the medical team at once; urgent "
    "assessment by a clinician competent in acute illness; monitor at least hourly / cấp "
    "cứu: nhóm có năng lực hồi sức (cả đường thở) đánh giá ngay; theo dõi liên tục; cân nhắc "
    "chuyển tuyến / emergency response: immediate review by a team with critical-care skills "
    "(incl. airway); continuous monitoring; consider transfer / age_not_recorded / chưa ghi "
    "tuổi: dùng NEWS2 của người lớn / age not recorded: adult NEWS2 used / "
    "not_validated_in_pregnancy / NEWS2 chưa được thẩm định cho phụ nữ có thai / NEWS2 is "
    "not validated in pregnancy / pews_not_validated_prehospital / PEWS chưa được thẩm định "
    "ngoài bệnh viện: dùng để quyết định chuyển tuyến / PEWS is not validated before "
    "hospital: use it to guide referral / think_sepsis / nhiệt độ ≥ 38 hoặc < 36 °C: nghĩ "
    "đến nhiễm khuẩn huyết / temperature ≥ 38 or < 36 °C: think sepsis / resp_rate / nhịp "
    "thở / respiration rate / spo2 / SpO2 / air_oxygen / thở oxy hay khí trời / air or "
    "oxygen / đang thở / breathing / bp_systolic / huyết áp tâm thu / systolic BP / "
    "bp_diastolic / huyết áp tâm trương / diastolic BP / heart_rate / nhịp tim / heart rate "
    "/ consciousness / ý thức / body_temp / nhiệt độ / temperature / mức độ suy hô hấp / "
    "respiratory distress / o2_support / hỗ trợ oxy / oxygen support / o2_flow / lưu lượng "
    "oxy / oxygen flow / cap_refill / thời gian đổ đầy mao mạch / capillary refill time / "
    "emergency / cấp cứu / báo điều dưỡng phụ trách; đánh giá lại trong 60 phút / inform the "
    "nurse in charge; reassess within 60 minutes / bác sĩ khám trong 30 phút; đánh giá lại "
    "trong 30 phút; theo dõi SpO2 liên tục / medical review within 30 minutes; reassess "
    "within 30 minutes; continuous SpO2 monitoring / khám ngay trong 15 phút bởi người có kỹ "
    "năng đường thở; chuẩn bị chuyển tuyến / rapid review within 15 minutes by someone with "
    "airway skills; prepare referral / cấp cứu nhi ngay lập tức; chuyển tuyến cấp cứu / "
    "immediate paediatric emergency response; emergency referral / hypertension-in-pregnancy "
    "/ tăng huyết áp thai kỳ (≥ 140/90) / hypertension in pregnancy (≥ 140/90) / đo lại sau "
    "ít nhất 4 giờ để xác nhận / recheck at least 4 h later to confirm / "
    "severe-hypertension-in-pregnancy / tăng huyết áp nặng thai kỳ (≥ 160/110) / severe "
    "hypertension in pregnancy (≥ 160/110) / cần điều trị khẩn và chuyển tuyến ngay, không "
    "chờ lần đo thứ hai / urgent treatment and referral now; do not wait for a second "
    "reading / /min / mmHg / L/min / lần/phút / lít/phút / giây "
    '{"alert_id":"","subject":"local:","kind":"news2","level":"low-medium","state":"raised","message":"","raised_at":"T:00+00:00","score":,"partial":false,"inputs":[["resp_rate",,"manual"],["spo2",,"nonin-format2"],["heart_rate",,"masimo-ascii"],["body_temp",,"hl7v2"],["bp_systolic",,"ble-blood-pressure"],["consciousness",0.0,"manual"]],"model":"news2@1.0.0","updated_at":"","notified_at":"","acknowledged":false,"acks":[],"missing":[],"causes":[],"cleared_at":null,"clear_reason":"","open":true}'
).encode()
ALERT_ZDICT_1_ID = zlib.adler32(ALERT_ZDICT_1)
