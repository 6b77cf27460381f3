// station-edge nurse dashboard. Plain JavaScript, no build step, no external code.
// State arrives over server-sent events (/events): a snapshot, then small updates.
"use strict";

const CFG = JSON.parse(document.getElementById("config").textContent);
const T = CFG.messages || {};
function t(msgid, args) {
  let s = T[msgid] || msgid;
  if (args) for (const k of Object.keys(args)) s = s.split("{" + k + "}").join(String(args[k]));
  return s;
}
const LOCALE = CFG.lang === "vi" ? "vi-VN" : "en-GB";
const TIME = new Intl.DateTimeFormat(LOCALE, { timeZone: CFG.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const DAY = new Intl.DateTimeFormat(LOCALE, { timeZone: CFG.timezone, day: "2-digit", month: "2-digit", year: "numeric" });
const SHORT_DAY = new Intl.DateTimeFormat(LOCALE, { timeZone: CFG.timezone, day: "2-digit", month: "2-digit" });
const SHORT_TIME = new Intl.DateTimeFormat(LOCALE, { timeZone: CFG.timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const CLOCK = new Intl.DateTimeFormat(LOCALE, { timeZone: CFG.timezone, weekday: "short", day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

const VITALS = {
  spo2: { name: () => t("SpO2"), digits: 0, order: 1 },
  heart_rate: { name: () => t("Heart rate"), digits: 0, order: 2 },
  resp_rate: { name: () => t("Respiration rate"), digits: 0, order: 3 },
  bp_systolic: { name: () => t("Blood pressure"), digits: 0, order: 4 },
  bp_diastolic: { name: () => t("Diastolic"), digits: 0, order: 5, hidden: true },
  bp_mean: { name: () => t("Mean arterial pressure"), digits: 0, order: 6 },
  body_temp: { name: () => t("Temperature"), digits: 1, order: 7 },
  perfusion_index: { name: () => t("Perfusion index"), digits: 1, order: 8 },
  glucose: { name: () => t("Blood glucose"), digits: 1, order: 9 },
  body_weight: { name: () => t("Weight"), digits: 1, order: 10 },
};
const UNITS = { "/min": () => t("/min"), "%": () => "%", "Cel": () => "°C", "mm[Hg]": () => "mmHg", "kg": () => "kg", "mmol/L": () => "mmol/L" };
const PARAMS = {
  resp_rate: () => t("respiration rate"), spo2: () => t("SpO2"), air_oxygen: () => t("air or oxygen"),
  bp_systolic: () => t("systolic blood pressure"), heart_rate: () => t("heart rate"),
  consciousness: () => t("consciousness"), body_temp: () => t("temperature"),
  resp_distress: () => t("respiratory distress"), o2_support: () => t("oxygen support"), o2_flow: () => t("oxygen flow"),
  cap_refill: () => t("capillary refill time"), bp_diastolic: () => t("diastolic blood pressure"), on_oxygen: () => t("air or oxygen"),
};
const LEVELS = {
  none: () => t("No risk level reached"), low: () => t("Low"), "low-medium": () => t("Low–medium"),
  medium: () => t("Medium"), high: () => t("High"), emergency: () => t("Emergency"),
};
const LEVEL_MARK = { none: "○", low: "◔", "low-medium": "◑", medium: "◕", high: "●", emergency: "⬤" };
const KINDS = {
  news2: () => t("NEWS2 score"), bp_crisis: () => t("Very high blood pressure"), desaturation: () => t("Low oxygen saturation"),
  spo2_low: () => t("Low oxygen saturation"), tachycardia: () => t("Fast heart rate"), bradycardia: () => t("Slow heart rate"),
  fever: () => t("Fever"), hypothermia: () => t("Low body temperature"),
  pews: () => t("Paediatric early warning score (PEWS)"), pregnancy_bp: () => t("High blood pressure in pregnancy"),
  imci_fast_breathing: () => t("Fast breathing for age (WHO IMCI)"), imci_hypoxaemia: () => t("Low oxygen: refer (WHO IMCI)"),
  imci_young_infant_temperature: () => t("Young infant, abnormal temperature (WHO IMCI)"),
};
const AGE_BANDS = { "0-1m": () => t("under 2 months"), "2-11m": () => t("2–11 months"), "1-4y": () => t("1–4 years"), "5-12y": () => t("5–12 years"), "13-15y": () => t("13–15 years"), "16y+": () => t("16 years and over") };
const DEVICE_STATES = { connecting: () => t("connecting"), connected: () => t("connected"), reading: () => t("reading"), silent: () => t("silent"), disconnected: () => t("disconnected"), error: () => t("error"), stopped: () => t("stopped") };
const NOTES = {
  age_not_recorded: () => t("age not recorded: adult NEWS2 used"), not_validated_in_pregnancy: () => t("NEWS2 is not validated in pregnancy"),
  pews_not_validated_prehospital: () => t("PEWS is not validated before hospital: use it to guide referral"),
  think_sepsis: () => t("temperature ≥ 38 or < 36 °C: think sepsis"),
};
const PREGNANCY_BP = {
  normal: () => t("Blood pressure normal for pregnancy"),
  "hypertension-in-pregnancy": () => t("Hypertension in pregnancy (≥ 140/90): recheck in 4 h"),
  "severe-hypertension-in-pregnancy": () => t("Severe hypertension in pregnancy (≥ 160/110): treat and refer now"),
};
const DISTRESS = { 0: () => t("none"), 1: () => t("mild"), 2: () => t("moderate"), 3: () => t("severe") };
const IMCI = { fast_breathing: () => t("fast breathing"), hypoxaemia: () => t("SpO2 below 90 %"), young_infant_temperature: () => t("abnormal temperature in a young infant") };
const CHILD_BANDS = ["0-1m", "2-11m", "1-4y", "5-12y", "13-15y"];
// the scorer's alert text is "Vietnamese / English": the page shows its own language's half
function ownHalf(message) {
  const parts = (message || "").split(" / ");
  return parts.length === 2 ? parts[CFG.lang === "vi" ? 0 : 1] : message || "";
}

const state = { devices: {}, visits: [], alerts: {}, status: {}, dropped: {} };
const latency = [];
window.__dashboard = { latency, state };

// -- helpers ----------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function num(v, digits) { return new Intl.NumberFormat(LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v); }
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = DAY.format(new Date()) === DAY.format(d);
  return today ? TIME.format(d) : SHORT_DAY.format(d) + " " + SHORT_TIME.format(d);
}
function unit(u) { return (UNITS[u] || (() => u))(); }
function label(table, key) { return (table[key] || (() => key))(); }
function ago(s) { if (s === null || s === undefined) return "–"; return s >= 3600 ? num(s / 3600, 1) + " h" : num(s / 60, 0) + " min"; }

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": CFG.csrf }, body: JSON.stringify(body || {}), credentials: "same-origin" });
  if (r.status === 401) { location.reload(); throw new Error("login"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.error || r.statusText), { field: data.field });
  return data;
}

// -- sound --------------------------------------------------------------------------------------
let audio = null;
function beep() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const now = audio.currentTime;
    for (const [i, f] of [[0, 880], [1, 660], [2, 880]]) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = f; o.connect(g); g.connect(audio.destination);
      g.gain.setValueAtTime(0.0001, now + i * 0.25); g.gain.exponentialRampToValueAtTime(0.4, now + i * 0.25 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.25 + 0.22);
      o.start(now + i * 0.25); o.stop(now + i * 0.25 + 0.24);
    }
  } catch (e) { /* no audio device: the banner still shows */ }
}
document.addEventListener("click", () => { if (audio && audio.state === "suspended") audio.resume(); }, { passive: true });

// -- rendering ----------------------------------------------------------------------------------
function renderClock() { document.getElementById("clock").textContent = CLOCK.format(new Date()); }

function renderStatus() {
  const s = state.status || {};
  const sync = s.sync || {}, backlog = s.backlog || {}, disk = s.disk || {};
  const box = document.getElementById("sync");
  const online = sync.state === "connected";
  box.className = "sync " + (online ? "online" : sync.state === "auth_refused" ? "refused" : "offline");
  let text = online ? t("Online") : sync.configured ? t("Offline, retrying") : t("Offline (no hub configured)");
  text += " · " + t("{n} waiting to sync", { n: backlog.pending ?? 0 });
  if (sync.last_sync_at) text += " · " + t("last sync {time}", { time: when(sync.last_sync_at) });
  box.textContent = text;
  const warn = document.getElementById("warnings");
  warn.replaceChildren();
  if (disk.full || disk.level === "full" || disk.level === "critical") warn.append(el("div", { class: "warning", text: "⚠ " + t("Disk full: new readings may be dropped. Call the technician.") }));
  else if (disk.level === "pressure") warn.append(el("div", { class: "warning", text: "⚠ " + t("Disk almost full: old synced data is being removed.") }));
  const dropped = Object.values(state.dropped || {}).reduce((a, b) => a + b, 0) || disk.dropped || 0;
  if (dropped) warn.append(el("div", { class: "warning", text: "⚠ " + t("{n} readings could not be stored", { n: dropped }) }));
  if (s.scores_available === false) warn.append(el("div", { class: "warning", text: "⚠ " + t("Scores unavailable: only the SpO2 safety alarm is active") }));
}

function visitById(id) { return state.visits.find((v) => v.visit_id === id); }

function renderAlerts() {
  const box = document.getElementById("alerts");
  box.replaceChildren();
  const alerts = Object.values(state.alerts).sort((a, b) => (a.acknowledged - b.acknowledged) || (b.raised_at > a.raised_at ? 1 : -1));
  for (const a of alerts) {
    const who = a.label || (a.device ? t("device {id}", { id: a.device }) : "");
    const lastAck = a.acks && a.acks.length ? a.acks[a.acks.length - 1] : null;
    box.append(el("div", { class: "alert" + (a.acknowledged ? " acked" : ""), "data-alert": a.alert_id, role: "alert" },
      el("span", { class: "what", text: (a.acknowledged ? "✓ " : "⚠ ") + label(KINDS, a.kind) + " · " + who + " · " + label(LEVELS, a.level) }),
      el("span", { class: "when", text: t("since {time}", { time: when(a.raised_at) }) + (lastAck ? " · " + t("seen by {who} at {time}", { who: lastAck.who, time: when(lastAck.at) }) : "") }),
      el("span", { class: "detail", text: ownHalf(a.message) }),
      a.acknowledged ? null : el("button", { class: "ack", "data-ack": a.alert_id, text: t("Acknowledge"), onclick: () => acknowledge(a.alert_id) })));
  }
}

function sparkline(points) {
  if (!points || points.length < 3) return null;
  const vals = points.map((p) => p[1]);
  const lo = Math.min(...vals), hi = Math.max(...vals), span = hi - lo || 1;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 28"); svg.setAttribute("preserveAspectRatio", "none"); svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", vals.map((v, i) => `${(i * 100) / (vals.length - 1)},${26 - ((v - lo) * 24) / span}`).join(" "));
  svg.append(line);
  return svg;
}

function vitalRows(latest, trend) {
  const grid = el("div", { class: "vitals" });
  const keys = Object.keys(latest || {}).filter((k) => VITALS[k] && !VITALS[k].hidden).sort((a, b) => VITALS[a].order - VITALS[b].order);
  for (const k of keys) {
    const v = latest[k];
    let shown = num(v.value, VITALS[k].digits);
    if (k === "bp_systolic" && latest.bp_diastolic) shown += "/" + num(latest.bp_diastolic.value, 0);
    grid.append(el("span", { class: "name", text: VITALS[k].name() }),
      el("span", { class: "value", "data-vital": k }, shown, el("small", { text: unit(v.unit) })),
      el("span", { class: "time", text: when(v.at) }));
    const s = trend ? sparkline(trend[k]) : null;
    if (s) grid.append(s);
  }
  if (!keys.length) grid.append(el("span", { class: "name", text: t("No reading yet") }));
  return grid;
}

function scoreBox(v) {
  const s = v.score;
  if (!s || s.total === null || s.total === undefined) {
    return el("div", { class: "score lvl-none is-partial", "data-score": "none" }, el("span", { class: "total", text: "–" }), el("span", { class: "level", text: t("No score yet") }));
  }
  const missing = (s.missing || []).map((m) => label(PARAMS, m)).join(", ");
  const total = s.partial ? "≥ " + s.total : String(s.total);
  const notes = (s.notes || []).map((n) => label(NOTES, n)).join(" · ");
  return el("div", { class: `score lvl-${s.level}` + (s.partial ? " is-partial" : ""), "data-score": s.partial ? "partial" : "complete", "data-level": s.level },
    el("span", { class: "total", text: total }),
    el("span", {},
      el("div", { class: "level", text: LEVEL_MARK[s.level] + " " + s.name + " · " + label(LEVELS, s.level) }),
      s.partial ? el("div", { class: "partial", text: t("≥ {total}, missing: {missing}", { total: s.total, missing }) }) : el("div", { class: "partial", text: t("complete") }),
      notes ? el("div", { class: "notes", text: notes }) : null,
      s.pregnancy_bp ? el("div", { class: "flag", text: "♀ " + label(PREGNANCY_BP, s.pregnancy_bp) }) : null,
      s.imci_flags && s.imci_flags.length ? el("div", { class: "flag", text: "⚑ " + t("Refer (WHO IMCI): {flags}", { flags: s.imci_flags.map((f) => label(IMCI, f)).join(", ") }) }) : null));
}

function renderVisits() {
  const box = document.getElementById("visits");
  box.replaceChildren();
  if (!state.visits.length) box.append(el("p", { class: "empty", text: t("No open visit") }));
  for (const v of state.visits) {
    const obs = v.observations || {};
    const entered = [];
    if (obs.resp_rate !== undefined) entered.push(t("Respiration rate") + " " + num(obs.resp_rate, 0) + " " + t("/min"));
    if (obs.consciousness) entered.push(t("Consciousness") + " " + obs.consciousness);
    if (obs.on_oxygen !== undefined) entered.push(obs.on_oxygen ? t("Supplemental oxygen") : t("Room air"));
    if (obs.spo2_scale) entered.push(t("SpO2 scale") + " " + obs.spo2_scale);
    if (obs.resp_distress !== undefined) entered.push(t("Respiratory distress") + " " + label(DISTRESS, obs.resp_distress));
    if (obs.cap_refill !== undefined) entered.push(t("Capillary refill") + " " + num(obs.cap_refill, 0) + " s");
    if (obs.o2_flow !== undefined) entered.push(t("Oxygen flow") + " " + num(obs.o2_flow, 1) + " " + t("L/min"));
    if (obs.o2_high_flow) entered.push(t("High flow, CPAP or BiPAP"));
    const partial = !v.score || v.score.partial;
    box.append(el("article", { class: "card visit", "data-visit": v.visit_id },
      el("h3", {}, el("span", { text: v.label }),
        el("span", { class: "badge", text: v.age_band ? label(AGE_BANDS, v.age_band) : t("age not recorded") }),
        v.pregnant ? el("span", { class: "badge pregnant", text: t("Pregnant") }) : null),
      el("div", { class: "sub", text: t("opened {time}", { time: when(v.opened_at) }) + " · " + (v.devices.length ? v.devices.join(", ") : t("no device")) }),
      scoreBox(v),
      vitalRows(v.latest, v.trend),
      entered.length ? el("div", { class: "sub", text: t("Entered by {who} at {time}: {values}", { who: v.observed_by, time: when(v.observed_at), values: entered.join(" · ") }) }) : null,
      el("div", { class: "actions" },
        el("button", { class: partial ? "primary" : "", "data-observe": v.visit_id, text: partial ? t("Enter missing values") : t("Enter values"), onclick: () => openObs(v.visit_id) }),
        el("button", { "data-close": v.visit_id, text: t("Close visit"), onclick: () => openClose(v.visit_id) }))));
  }
}

function renderDevices() {
  const box = document.getElementById("devices");
  box.replaceChildren();
  for (const d of Object.values(state.devices).sort((a, b) => a.id.localeCompare(b.id))) {
    const visit = d.visit_id ? visitById(d.visit_id) : null;
    box.append(el("article", { class: "card device", "data-device": d.id },
      el("h3", {}, el("span", { text: d.id }), el("span", { class: "state " + (d.state || ""), text: label(DEVICE_STATES, d.state || "connecting") })),
      el("div", { class: "sub", text: (d.format || "") + " · " + (visit ? t("attached to {label}", { label: visit.label }) : t("not attached to a visit")) }),
      vitalRows(d.latest, null),
      !visit && state.visits.length && Object.keys(d.latest || {}).length
        ? el("div", { class: "actions" }, el("button", { "data-assign": d.id, text: t("Assign readings to a visit"), onclick: () => openAssign(d.id) }))
        : null));
  }
}

function renderAll() { renderStatus(); renderAlerts(); renderVisits(); renderDevices(); }

// -- live updates -------------------------------------------------------------------------------
function apply(m) {
  switch (m.type) {
    case "snapshot":
      state.devices = {}; for (const d of m.devices) state.devices[d.id] = d;
      state.visits = m.visits; state.alerts = {}; for (const a of m.alerts) state.alerts[a.alert_id] = a;
      state.status = m.status || {}; state.dropped = m.dropped || {};
      renderAll(); break;
    case "readings":
      for (const r of m.items) {
        const d = state.devices[r.device] || (state.devices[r.device] = { id: r.device, latest: {} });
        d.latest[r.vital] = r;
        if (r.visit_id) {
          const v = visitById(r.visit_id);
          if (v) {
            v.latest[r.vital] = r;
            const s = v.trend[r.vital] || (v.trend[r.vital] = []);
            s.push([r.at, r.value]); if (s.length > 30) s.shift();
          }
        }
      }
      renderVisits(); renderDevices();
      if (m.sent_ms) latency.push(Date.now() - m.sent_ms);
      break;
    case "device": state.devices[m.device.id] = Object.assign(state.devices[m.device.id] || { latest: {} }, m.device); renderDevices(); break;
    case "alert": {
      const a = m.alert;
      if (a.open) state.alerts[a.alert_id] = a; else delete state.alerts[a.alert_id];
      if (a.open && ["raised", "escalated", "renotified"].includes(a.state)) beep();
      renderAlerts(); break;
    }
    case "score": { const v = visitById(m.visit_id); if (v) { v.score = m.score; renderVisits(); } break; }
    case "visits": state.visits = m.visits; for (const d of m.devices) state.devices[d.id] = d; renderVisits(); renderDevices(); break;
    case "status": state.status = m.status; renderStatus(); break;
    case "dropped": state.dropped[m.device] = m.count; renderStatus(); break;
    case "expired": location.reload(); break;
  }
}

let source = null;
function connect() {
  source = new EventSource("/events");
  source.onopen = () => document.getElementById("conn").classList.add("hidden");
  source.onmessage = (e) => apply(JSON.parse(e.data));
  source.onerror = () => {
    document.getElementById("conn").classList.remove("hidden");
    if (source.readyState === EventSource.CLOSED) {
      // refused (session expired?): ask the server what to show
      fetch("/api/state", { credentials: "same-origin" }).then((r) => { if (r.status === 401) location.reload(); else setTimeout(connect, 2000); }, () => setTimeout(connect, 2000));
    }
  };
}

// -- actions ------------------------------------------------------------------------------------
async function acknowledge(id) {
  try { await post(`/api/alerts/${encodeURIComponent(id)}/ack`, {}); } catch (e) { alert(e.message); }
}

function showError(id, e) { const p = document.getElementById(id); p.textContent = e ? e.message : ""; p.classList.toggle("hidden", !e); }

function wireDialog(dialog) { for (const b of dialog.querySelectorAll(".cancel")) b.addEventListener("click", () => dialog.close()); }

const visitDialog = document.getElementById("visit-dialog");
const obsDialog = document.getElementById("obs-dialog");
const closeDialog = document.getElementById("close-dialog");
const assignDialog = document.getElementById("assign-dialog");
let obsVisit = null, closeVisit = null, assignDevice = null;

function openVisitDialog() {
  const form = document.getElementById("visit-form");
  form.reset(); showError("visit-error", null);
  const box = document.getElementById("visit-devices");
  for (const l of box.querySelectorAll("label")) l.remove();
  for (const d of Object.values(state.devices).sort((a, b) => a.id.localeCompare(b.id))) {
    if (d.visit_id) continue;
    box.append(el("label", {}, el("input", { type: "checkbox", name: "devices", value: d.id }), d.id));
  }
  visitDialog.showModal();
  document.getElementById("identifier").focus();
}

document.getElementById("open-visit").addEventListener("click", openVisitDialog);
document.getElementById("identifier").addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); }); // a scanner ends with Enter
document.getElementById("visit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = { kind: f.get("kind"), identifier: f.get("identifier"), birth: f.get("birth") || null, age_band: f.get("age_band") || null, pregnant: f.get("pregnant") === "on", devices: f.getAll("devices") };
  try { await post("/api/visits", body); visitDialog.close(); } catch (err) { showError("visit-error", err); }
});

function openObs(id) {
  obsVisit = id; const v = visitById(id);
  const form = document.getElementById("obs-form"); form.reset(); showError("obs-error", null);
  document.getElementById("obs-label").textContent = v ? "· " + v.label : "";
  const child = !!(v && CHILD_BANDS.includes(v.age_band));
  for (const e of document.querySelectorAll(".child-only")) e.classList.toggle("hidden", !child);
  obsDialog.showModal();
  document.getElementById("resp_rate").focus();
}
document.getElementById("obs-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = {};
  for (const k of ["resp_rate", "consciousness", "on_oxygen", "spo2_scale", "resp_distress", "cap_refill", "o2_flow", "o2_high_flow"]) if (f.get(k)) body[k] = f.get(k);
  try { await post(`/api/visits/${encodeURIComponent(obsVisit)}/observations`, body); obsDialog.close(); } catch (err) { showError("obs-error", err); }
});

function openAssign(deviceId) {
  assignDevice = deviceId;
  showError("assign-error", null);
  document.getElementById("assign-label").textContent = "· " + deviceId;
  const select = document.getElementById("assign-visit");
  select.replaceChildren(...state.visits.map((v) => el("option", { value: v.visit_id, text: v.label })));
  assignDialog.showModal();
}
document.getElementById("assign-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await post(`/api/visits/${encodeURIComponent(f.get("visit"))}/assign`, { device: assignDevice, minutes: f.get("minutes") });
    assignDialog.close();
  } catch (err) { showError("assign-error", err); }
});

function openClose(id) { closeVisit = id; const v = visitById(id); document.getElementById("close-label").textContent = v ? "· " + v.label : ""; closeDialog.showModal(); }
document.getElementById("close-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await post(`/api/visits/${encodeURIComponent(closeVisit)}/close`, {}); closeDialog.close(); } catch (err) { alert(err.message); }
});

for (const d of [visitDialog, obsDialog, closeDialog, assignDialog]) wireDialog(d);
renderClock(); setInterval(renderClock, 1000);
connect();
