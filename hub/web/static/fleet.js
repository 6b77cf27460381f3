// station-edge hub: the fleet page. Polls /api/fragments every refresh_s seconds (politely: one
// request at a time, none while the tab is hidden) and swaps the server-rendered parts in; the
// province filter changes the view without a reload. No library, nothing from another origin.
"use strict";
const CFG = JSON.parse(document.getElementById("config").textContent);
const PARTS = ["updated", "alerts", "summary", "fleet", "plot", "commands"];
let busy = false;
let timer = null;

function province() { return document.getElementById("province").value; }

function schedule(ms) {
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(refresh, ms);
}

async function refresh() {
  timer = null;
  if (busy) return;
  if (document.hidden) { schedule(CFG.refresh_s * 1000); return; }
  busy = true;
  const wanted = province();
  try {
    const url = "/api/fragments" + (wanted ? "?province=" + encodeURIComponent(wanted) : "");
    const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) { window.location.assign("/"); return; }
    if (!res.ok) throw new Error("HTTP " + res.status);
    const data = await res.json();
    if ((data.province || "") === province()) {
      for (const id of PARTS) {
        const el = document.getElementById(id);
        if (el && typeof data.html[id] === "string" && el.innerHTML !== data.html[id]) el.innerHTML = data.html[id];
      }
      document.body.dataset.province = data.province || "";
    }
    document.getElementById("conn").classList.add("hidden");
  } catch (err) {
    document.getElementById("conn").classList.remove("hidden");
  } finally {
    busy = false;
  }
  schedule(CFG.refresh_s * 1000);
}

document.getElementById("province").addEventListener("change", () => {
  const p = province();
  history.replaceState(null, "", p ? "/?province=" + encodeURIComponent(p) : "/");
  document.getElementById("lang-province").value = p;
  schedule(0);
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(0); });
document.getElementById("lang-province").value = province();
document.body.dataset.province = province();
schedule(CFG.refresh_s * 1000);
