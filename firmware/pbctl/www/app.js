// pbctl web UI: plain JavaScript on the /cnf API only (../shared/spec/API.md),
// served gzipped from the controller's flash. No build step, no libraries.
"use strict";

const $ = (s, e) => (e || document).querySelector(s);
const $$ = (s, e) => Array.from((e || document).querySelectorAll(s));
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
const amps = ma => (ma / 1000).toFixed(1);
const kw = w => (w / 1000).toFixed(2);
const kwh = wh => (wh / 1000).toFixed(2);

const STATES = ["?", "waiting for EV", "EV present", "charging", "charging, ventilation", "error", "offline"];
const ROLES = ["display only", "consumption", "production", "grid demand", "vehicle consumption", "storage"];
const MODES = ["absolute current", "relative current", "solar surplus", "relative to surplus",
  "surplus minus current", "surplus only"];
const PHASES = [[0, "detect"], [1, "L1"], [2, "L2"], [4, "L3"], [3, "L1+L2"], [5, "L1+L3"], [6, "L2+L3"],
  [7, "L1+L2+L3"]];
const DAYS = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
const COLORS = ["#d9480f", "#2b8a3e", "#1971c2", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c940d"];

// ---- the API: fetch with Basic auth; a 401 asks for a login in the page, then retries ----

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let auth = sessionStorage.getItem("pbctl-auth") || "";
let asking = null; // the open login prompt's promise

// form: true = body as a form; "raw" = body (a Blob) sent as it is, the reply's text returned
async function api(cmd, query, body, form) {
  let url = "/cnf?cmd=" + encodeURIComponent(cmd);
  for (const k in query || {}) url += "&" + encodeURIComponent(k) + "=" + encodeURIComponent(query[k]);
  // a 503 (the controller sheds requests while its heap is short; nothing
  // changed) is asked again, 3 times at most, 0.3 s, 0.6 s, 1.2 s later; a
  // request that got no answer at all only if it is a read (GET)
  for (let tries = 0; ; tries++) {
    const h = {};
    // credentials "omit": a 401 never opens the browser's own login dialog
    if (auth) h.Authorization = "Basic " + auth;
    const o = { headers: h, credentials: "omit", cache: "no-store" };
    if (body instanceof Blob) { // a file as it is (cmd=update's bundle)
      o.method = "POST";
      h["Content-Type"] = "application/octet-stream";
      o.body = body;
    } else if (body !== undefined) {
      o.method = "POST";
      h["Content-Type"] = form === "raw" ? "application/octet-stream" : form ? "application/x-www-form-urlencoded" : "application/json";
      o.body = form === "raw" ? body : form ? new URLSearchParams(body).toString() : JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(url, o);
    } catch (e) {
      if (tries < 3 && !o.method) { await sleep(300 << tries); continue; }
      throw new ApiError(0, "no connection to the controller");
    }
    if (r.status === 503 && tries < 3) { await r.text(); await sleep(300 << tries); continue; }
    const text = await r.text();
    let v = text;
    try { v = JSON.parse(text); } catch (e) { /* not JSON: keep the text */ }
    if (r.status === 401) {
      await askLogin(String(v));
      continue;
    }
    if (!r.ok) throw new ApiError(r.status, typeof v === "string" ? v : "HTTP " + r.status);
    return form === "raw" ? text : v;
  }
}

function sleep(ms) {
  return new Promise(res => setTimeout(res, ms));
}

function askLogin(msg) {
  if (asking) return asking;
  const box = $("#login"), f = $("#login-form");
  $("#login-msg").textContent = msg === "authentication required" ? "Please log in as admin." : msg;
  f.password.value = "";
  box.hidden = false;
  f.password.focus();
  asking = new Promise((ok, fail) => {
    const done = () => { box.hidden = true; asking = null; f.onsubmit = null; $("#login-cancel").onclick = null; };
    f.onsubmit = e => {
      e.preventDefault();
      setAuth(f.user.value + ":" + f.password.value);
      done();
      ok();
    };
    $("#login-cancel").onclick = () => { done(); fail(new ApiError(401, msg)); };
  });
  return asking;
}

function setAuth(userPwd) {
  // base64 of the UTF-8 bytes
  auth = userPwd ? btoa(String.fromCharCode(...new TextEncoder().encode(userPwd))) : "";
  if (auth) sessionStorage.setItem("pbctl-auth", auth); else sessionStorage.removeItem("pbctl-auth");
  $("#logout").hidden = !auth;
}

// ---- dashboard: polls get_dev_info every cycle ----

let last = null; // the last get_dev_info reply
const hist = []; // chart samples {t, l: [mA x3], lim: {dev_id: mA}}

function totals(d) {
  // the grid meter's currents if there is one that answers; else the EVSEs plus consumption meters
  const g = d.devices.find(x => !x.is_evse && x.role === 3 && x.device_enabled && !x.com_err);
  if (g) return { src: "grid meter " + g.name, l: [g.current_l1, g.current_l2, g.current_l3] };
  const l = [0, 0, 0];
  for (const x of d.devices) {
    if (x.is_evse || x.role === 1) for (let i = 0; i < 3; i++) l[i] += x["current_l" + (i + 1)] || 0;
  }
  return { src: "EVSEs and consumption meters", l };
}

function val(f, v, text) {
  return '<span data-f="' + f + '" data-v="' + esc(v) + '">' + esc(text) + "</span>";
}

function currents(x) {
  return [1, 2, 3].map(i => val("current_l" + i, x["current_l" + i], amps(x["current_l" + i]))).join(" · ") + " A";
}

function tile(x) {
  const rows = [];
  const row = (k, html) => rows.push("<dt>" + k + "</dt><dd>" + html + "</dd>");
  let badge;
  if (x.is_evse) {
    badge = val("state", x.state, STATES[x.state] || "state " + x.state);
    row("L1 · L2 · L3", currents(x));
    row("Power", val("cur_charging_power", x.cur_charging_power, kw(x.cur_charging_power)) + " kW");
    row("Energy", val("total_energy", x.total_energy, kwh(x.total_energy)) + " kWh");
    row("Limit", val("charging_cur", x.charging_cur, amps(x.charging_cur)) + " A");
    // phases in use (bit field) and, where the box can switch, its relay (phase_mode 1 / 3)
    row("Phases", val("phases", x.phases, [1, 2, 3].filter(i => x.phases >> (i - 1) & 1).map(i => "L" + i)
      .join("+") || "—") + (x.phase_mode ? " · " + val("phase_mode", x.phase_mode, x.phase_mode + "-phase mode") : ""));
    row("Why", val("limit_reason", x.limit_reason, x.limit_reason || "—"));
    row("Paused", val("paused", x.paused, x.paused ? "yes" : "no") +
      (x.paused ? ", " + val("pause_time", x.pause_time, x.pause_time) + " s (min " + x.pause_min_time + " s)" : ""));
    row("User", val("user", x.user, x.user || "—"));
  } else {
    badge = val("role", x.role, ROLES[x.role] || "role " + x.role);
    row("Power", val("power_w", x.power_w, kw(x.power_w)) + " kW");
    row("L1 · L2 · L3", currents(x));
    row("Import", val("import", x.import, kwh(x.import)) + " kWh");
    row("Export", val("export", x.export, kwh(x.export)) + " kWh");
  }
  const warn = !x.device_enabled ? "disabled" : x.com_err ? "no answer: " + (x.last_error || "communication error") : "";
  return '<div class="tile ' + (x.is_evse ? "evse" : "meter") + (x.is_evse ? " s" + x.state : "") +
    (warn ? " bad" : "") + '" data-dev="' + esc(x.dev_id) + '">' +
    "<h3>" + esc(x.name || x.dev_id) + " <small>" + esc(x.dev_id) + "</small></h3>" +
    '<p class="badge">' + badge + "</p><dl>" + rows.join("") + "</dl>" +
    (warn ? '<p class="warn">' + esc(warn) + "</p>" : "") + "</div>";
}

function render(d) {
  const p = d.params;
  document.title = p.title || "pbctl";
  $("#title").textContent = p.title || "pbctl";
  $("#clock").textContent = p.local_time ? "Controller's local time " + p.local_time.slice(0, 16) + " (" + p.tz + ")" : "";
  const t = totals(d), max = p.max_total_current;
  $("#phases").innerHTML = t.l.map((ma, i) => {
    const pc = max > 0 ? Math.min(100, Math.round(ma * 100 / max)) : 0;
    return '<div class="phase' + (ma > max ? " over" : "") + '"><b>L' + (i + 1) + "</b>" +
      '<span class="bar"><i style="width:' + pc + '%"></i></span>' +
      val("total_l" + (i + 1), ma, amps(ma)) + " / " + val("max_total_current", max, amps(max)) + " A</div>";
  }).join("") + '<small class="src">' + esc(t.src) + "</small>";
  $("#tiles").innerHTML = d.devices.map(tile).join("") ||
    '<p class="empty">No devices yet: add them under Settings.</p>';
}

function sample(d) {
  const now = Date.now(), lim = {};
  for (const x of d.devices) if (x.is_evse) lim[x.name || x.dev_id] = x.charging_cur;
  hist.push({ t: now, l: totals(d).l, lim });
  while (hist.length && hist[0].t < now - 600000) hist.shift();
  draw();
}

function draw() {
  const c = $("#chart"), w = c.clientWidth, h = c.clientHeight;
  if (!w || !h || !last) return;
  const r = window.devicePixelRatio || 1;
  c.width = Math.round(w * r);
  c.height = Math.round(h * r);
  const g = c.getContext("2d");
  g.scale(r, r);
  const now = Date.now(), max = last.params.max_total_current;
  const series = [0, 1, 2].map(i => ({ name: "L" + (i + 1), color: COLORS[i], dash: [], v: s => s.l[i] }));
  const names = [];
  for (const s of hist) for (const k in s.lim) if (!names.includes(k)) names.push(k);
  names.forEach((k, i) => series.push({ name: "limit " + k, color: COLORS[3 + i % 5], dash: [6, 4], v: s => s.lim[k] }));
  let top = max;
  for (const s of hist) for (const se of series) top = Math.max(top, se.v(s) || 0);
  const step = top > 60000 ? 20000 : top > 30000 ? 10000 : 5000;
  top = Math.max(step, Math.ceil(top * 1.05 / step) * step);
  const L = 34, R = w - 6, T = 6, B = h - 18;
  const X = t => L + (R - L) * (t - (now - 600000)) / 600000, Y = v => B - (B - T) * v / top;
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = g.strokeStyle = "#868e96";
  g.lineWidth = 1;
  g.textAlign = "right";
  for (let v = 0; v <= top; v += step) {
    g.globalAlpha = 0.3;
    g.beginPath(); g.moveTo(L, Y(v)); g.lineTo(R, Y(v)); g.stroke();
    g.globalAlpha = 1;
    g.fillText(v / 1000 + " A", L - 3, Y(v) + 4);
  }
  g.textAlign = "center";
  for (let m = 10; m >= 0; m -= 2) g.fillText(m ? "-" + m + " min" : "now", Math.min(X(now - m * 60000), R - 12), h - 4);
  g.strokeStyle = "#e03131";
  g.setLineDash([2, 3]);
  g.beginPath(); g.moveTo(L, Y(max)); g.lineTo(R, Y(max)); g.stroke();
  g.lineWidth = 2;
  for (const se of series) {
    g.strokeStyle = se.color;
    g.setLineDash(se.dash);
    g.beginPath();
    let prev = null;
    for (const s of hist) {
      const v = se.v(s);
      if (v === undefined) { prev = null; continue; }
      // a gap of more than 15 s (page hidden, controller away) is not bridged
      if (prev && s.t - prev.t < 15000) g.lineTo(X(s.t), Y(v)); else g.moveTo(X(s.t), Y(v));
      prev = s;
    }
    g.stroke();
  }
  $("#legend").innerHTML = series.map(se => '<span><i style="border-color:' + se.color + ";border-style:" +
    (se.dash.length ? "dashed" : "solid") + '"></i>' + esc(se.name) + "</span>").join("") +
    '<span><i style="border-color:#e03131;border-style:dotted"></i>max_total_current</span>';
}

let polling = 0;
async function poll() {
  let wait = 3000;
  if (!document.hidden) {
    try {
      last = await api("get_dev_info");
      render(last);
      sample(last);
      status("");
      if (Date.now() - linksAt > 10000) links();
      wait = Math.min(Math.max(last.params.cycle_time, 1000), 5000);
    } catch (e) {
      status(e.message);
      if (e.status === 401) wait = 30000; // login cancelled: ask again later
    }
  }
  clearTimeout(polling);
  polling = setTimeout(poll, wait);
}

// the integrations' state (sys_info links: Modbus TCP, OCPP, MQTT), every 10 s with the polling
let linksAt = 0;
function linkText(n, x) {
  if (x.state === "failed") return [false, "not running · " + x.last_error];  // switched on, could not start
  if (n === "mbtcp") return [!x.error, x.error ? "not listening · " + x.error : "port " + x.port + ", " + x.clients + " clients"];
  if (n === "ocpp") return [x.state === "connected", x.state + (x.last_error ? " · " + x.last_error : "") + " · " + x.journal + " queued"];
  const counts = ["sent", "dropped", "reconnects", "bad"].filter(k => k in x).map(k => k + " " + x[k]).join(", ");
  return [x.connected, (x.connected ? "connected" : "not connected") + (x.last_error ? " · " + x.last_error : "") +
    (counts ? " (" + counts + ")" : "")];
}
async function links() {
  linksAt = Date.now();
  try {
    const l = (await api("sys_info")).links || {}, el = $("#links");
    el.innerHTML = Object.keys(l).sort().map(n => {
      const [up, text] = linkText(n, l[n]);
      return '<span class="ln ' + (up ? "up" : "down") + '" data-link="' + esc(n) + '"><b>' +
        esc({mbtcp: "Modbus TCP", ocpp: "OCPP", mqtt: "MQTT"}[n] || n) + "</b> " + esc(text) + "</span>";
    }).join("");
    el.hidden = !Object.keys(l).length;
  } catch (e) {
    linksAt = 0; // (the dashboard goes on without it, and asks again at its next poll)
  }
}

function status(msg) {
  $("#status").textContent = msg;
  $("#status").className = msg ? "bad" : "";
}

// ---- settings: forms built from field lists ----

// [name, label, kind, options]: kind s text, i integer, A current (mA in the API, A here),
// A- current with -1 = empty, b checkbox, o select of options, u list of ids, rules, rfids
const PARAMS = [
  ["title", "Title", "s"], ["desc", "Description", "s"],
  ["max_total_current", "Max. total current per phase (A)", "A"],
  ["reserve_current", "Reserve current (A)", "A"],
  ["max_total_evse_current", "Max. current of all EVSEs (A, 0 = no cap)", "A"],
  ["lb_enabled", "Load balancing (off: only observe)", "b"],
  ["disable_policy", "A disabled EVSE gets", "o", [[0, "no charging"], [1, "its minimum current"], [-1, "no limit"]]],
  ["cycle_time", "Cycle time (ms)", "i"],
  ["meter_timeout", "Meter timeout (s)", "i"],
  ["failsafe_current", "Failsafe current (A, empty = each EVSE's minimum)", "A-"],
  ["rotation_time", "Rotation time of paused EVSEs (s)", "i"],
  ["http_timeout", "Timeout of HTTP input devices (s)", "i"],
  ["api_read_auth", "Reading the API needs the admin login", "b"],
  ["phase_switch_min_time", "Min. time between two phase switches of an EVSE (s)", "i"],
  ["max_phase_skew", "Max. phase skew (A, 0 = off)", "A"],
  ["modbus_tcp", "Modbus TCP (no authentication: anyone on the network may use it)", "o",
    [[0, "off"], [1, "read only"], [2, "read and control (8093, 8094, 8087, 8086)"]]],
  ["modbus_tcp_port", "Modbus TCP base port (wallbox; +1, +2: meters)", "i"],
  ["ocpp_url", "OCPP 1.6J central system (ws:// or wss:// URL ending in the charge point id; empty = off)", "s"],
  ["ocpp_password", "OCPP password (empty = unchanged)", "pw"],
  ["tz", "Time zone: POSIX TZ string, e.g. CET-1CEST,M3.5.0,M10.5.0/3 (charging rules run on local time)", "s"],
];
// MQTT (INTEGRATIONS.md §3): the password comes back as *** and is kept when *** is sent again
const MQTT = [
  ["mqtt_url", "Broker (mqtt://user:password@host:port, empty = off)", "s"],
  ["mqtt_prefix", "Topic prefix (empty = pbctl/<serial number>)", "s"],
  ["mqtt_ha_discovery", "Home Assistant discovery", "b"],
];
const DEVICE = [
  ["name", "Name", "s"], ["device_enabled", "Enabled", "b"], ["desc", "Description", "s"],
  ["address", "Address (evse, meter1, meter2 or rtu:N)", "s", "pb"], ["id", "Modbus id", "i", "pb"],
  ["used_phases", "Phases", "o", PHASES],
];
const EVSE = [
  ["label", "Label", "s"], ["min_charging_cur", "Min. current (A)", "A"], ["max_charging_cur", "Max. current (A)", "A"],
  ["prio", "Priority (lower first)", "i"], ["pause_min_time", "Min. pause (s)", "i"],
  ["attach", "Meter measuring it", "o", []], ["phase_rotation", "Grid phases of its L1 L2 L3", "o",
    [[0, "L1 L2 L3"], [1, "L2 L3 L1"], [2, "L3 L1 L2"], [3, "L1 L3 L2"], [4, "L2 L1 L3"], [5, "L3 L2 L1"]]],
  ["battery_save_threshold", "Stop below (A, 0 = off)", "A"], ["group", "Group", "i"],
  ["fixed_rfid", "Fixed RFID", "s"], ["enable_snooze", "Snooze", "b"], ["enable_wakeup", "Wake-up", "b"],
  ["phase_switching", "Phase switching 1p/3p (where the box can)", "o", [[0, "off"], [1, "automatic"]]],
  ["users", "Users allowed (ids, empty = anybody)", "u"], ["charging_rules", "Charging rules", "rules"],
];
const METER = [["role", "Role", "o", ROLES.map((r, i) => [i, r])], ["invert", "Invert", "b"], ["is_va", "Values in VA", "b"]];
const USER = [
  ["name", "Name", "s"], ["display", "Show name while plugged in", "b"], ["dev_ids", "May use", "ids"],
  ["rfids", "RFIDs / PINs", "rfids"], ["charging_rules", "Charging rules", "rules"],
];
const RULE = [
  ["enabled", "On", "b"], ["mode", "Mode", "o", MODES.map((m, i) => [i, m])], ["current", "Current (A)", "A"],
  ["days", "Days", "days"], ["time", "From", "time"], ["dur", "Minutes (0 = all day)", "i"],
  ["udur", "Hold (s)", "i"],
];
const RFID = [
  ["id", "RFID / PIN", "s"], ["name", "Name", "s"], ["ac_auth", "Authorizes", "b"], ["ac_ovch", "May stop", "b"],
  ["used_phases", "Phases", "o", PHASES],
];

let conf = null; // the last get_params reply
let users = null; // get_users, when logged in

function input(f, v) {
  const [n, , k, opt] = f;
  if (k === "b") return '<input type="checkbox" name="' + n + '"' + (v ? " checked" : "") + ">";
  if (k === "o") {
    return '<select name="' + n + '">' + opt.map(o => '<option value="' + esc(o[0]) + '"' +
      (String(o[0]) === String(v) ? " selected" : "") + ">" + esc(o[1]) + "</option>").join("") + "</select>";
  }
  if (k === "A" || k === "A-") v = k === "A-" && v === -1 ? "" : v / 1000;
  if (k === "u") v = (v || []).join(", ");
  if (k === "pw") {
    return '<input type="password" autocomplete="new-password" name="' + n + '" placeholder="' +
      (conf && conf.ocpp_password_set ? "(set)" : "(none)") + '">';
  }
  if (k === "time") {
    v = String(Math.floor(v / 60)).padStart(2, "0") + ":" + String(v % 60).padStart(2, "0");
    return '<input type="time" name="' + n + '" value="' + v + '">';
  }
  const num = k === "i" || k[0] === "A";
  return '<input name="' + n + '"' + (num ? ' inputmode="decimal"' : "") + ' value="' + esc(v) + '">';
}

function field(f, v) {
  const [n, label, k] = f;
  let h;
  if (k === "rules") h = '<div class="sub" data-list="rules">' + (v || []).map(ruleRow).join("") + "</div>" +
    '<button type="button" class="link" data-add="rules">+ rule</button>';
  else if (k === "rfids") h = '<div class="sub" data-list="rfids">' + (v || []).map(rfidRow).join("") + "</div>" +
    '<button type="button" class="link" data-add="rfids">+ RFID</button>';
  else if (k === "days") h = '<span class="days">' + DAYS.map((d, i) => '<label><input type="checkbox" name="day' + i +
    '"' + (v & (1 << i) ? " checked" : "") + ">" + d + "</label>").join("") + "</span>";
  else if (k === "ids") h = '<span class="days">' + evses().map(e => '<label><input type="checkbox" name="id-' +
    esc(e.dev_id) + '"' + ((v || []).includes(e.dev_id) ? " checked" : "") + ">" + esc(e.name || e.dev_id) +
    "</label>").join("") + "</span>";
  else h = input(f, v);
  const tag = k === "rules" || k === "rfids" || k === "days" || k === "ids" ? "div" : "label";
  return "<" + tag + ' class="f ' + k + '" data-f="' + n + '"><span>' + esc(label) + "</span>" + h +
    '<em class="err" data-err="' + n + '"></em></' + tag + ">";
}

function ruleRow(r) {
  return '<fieldset class="item" data-item="' + esc(JSON.stringify(r)) + '">' +
    RULE.map(f => field(f, r[f[0]])).join("") + '<button type="button" class="link" data-del>remove</button></fieldset>';
}

function rfidRow(r) {
  return '<fieldset class="item" data-item="' + esc(JSON.stringify(r)) + '">' +
    RFID.map(f => field(f, r[f[0]])).join("") + '<button type="button" class="link" data-del>remove</button></fieldset>';
}

function evses() {
  return conf ? conf.devices.filter(d => d.dev_type.startsWith("evse_")) : [];
}

function read(el, fields, out) {
  // the form's values into out, converted to the API's types; input that is not a
  // number goes to the API as it is, whose error is then shown next to the field
  for (const f of fields) {
    const [n, , k] = f;
    const box = $(':scope > [data-f="' + n + '"]', el);
    if (!box) continue;
    const e = $('[name="' + n + '"]', box);
    if (k === "b") out[n] = e.checked;
    else if (k === "o") out[n] = f[3][e.selectedIndex][0]; // the option's value, of its type
    else if (k === "i") out[n] = num(e.value, 1);
    else if (k === "A") out[n] = num(e.value, 1000);
    else if (k === "A-") out[n] = e.value.trim() === "" ? -1 : num(e.value, 1000);
    else if (k === "pw") { if (e.value !== "") out[n] = e.value; } // never shown; empty: unchanged
    else if (k === "u") out[n] = e.value.split(",").map(s => s.trim()).filter(s => s);
    else if (k === "time") { const m = /^(\d+):(\d+)/.exec(e.value); out[n] = m ? m[1] * 60 + Number(m[2]) : 0; }
    else if (k === "days") out[n] = DAYS.reduce((a, d, i) => a | ($('[name="day' + i + '"]', box).checked ? 1 << i : 0), 0);
    else if (k === "ids") out[n] = evses().map(x => x.dev_id).filter(i => $('[name="id-' + i + '"]', box).checked);
    else if (k === "rules" || k === "rfids") {
      out[n] = $$(":scope > .sub > .item", box).map(it =>
        read(it, k === "rules" ? RULE : RFID, JSON.parse(it.dataset.item)));
    } else out[n] = e.value;
  }
  return out;
}

function num(s, scale) {
  const t = s.trim();
  if (t === "" || isNaN(Number(t))) return t;
  return Math.round(Number(t) * scale);
}

function clearErrors(form) {
  for (const e of $$(".err", form)) e.textContent = "";
  const m = $(".msg", form);
  if (m) { m.textContent = ""; m.className = "msg"; }
}

function showError(form, e) {
  // "bad value: max_total_current" goes next to that field, anything else next to the button
  const m = /: ([a-z_0-9]+)$/.exec(e.message);
  const at = m && $('[data-err="' + m[1] + '"]', form);
  if (at) at.textContent = e.message; else note(form, e.message, true);
}

function note(form, text, bad) {
  const m = $(".msg", form);
  m.textContent = text;
  m.className = "msg" + (bad ? " bad" : " ok");
}

function buttons(save, extra) {
  return '<div class="row"><button type="submit">' + save + "</button>" + (extra || "") + '<span class="msg"></span></div>';
}

async function loadSettings() {
  try {
    conf = await api("get_params");
  } catch (e) {
    status(e.message);
    return;
  }
  const f = $("#params");
  f.innerHTML = PARAMS.map(x => field(x, conf[x[0]])).join("") +
    '<p class="info">Local time ' + esc(conf.local_time) + " · version " + esc(conf.version) + " · up to " + conf.max_evses + " EVSEs · EVSEs use " +
    kw(conf.cons_evse_power) + " of " + kw(conf.avail_evse_power) + " kW available</p>" + buttons("Save");
  f.fields = PARAMS;
  const m = $("#mqtt");
  m.innerHTML = MQTT.map(x => field(x, conf[x[0]])).join("") + buttons("Save");
  m.fields = MQTT;
  $("#devices").innerHTML = conf.devices.map(d => '<div class="item" data-dev="' + esc(d.dev_id) + '"><span><b>' +
    esc(d.name || d.dev_id) + "</b> <small>" + esc(d.dev_id) + " · " + esc(conf.dev_meta[d.dev_type] || d.dev_type) +
    "</small></span><span><button type=\"button\" class=\"link\" data-edit>Edit</button> " +
    '<button type="button" class="link danger" data-delete>Delete</button></span></div>').join("") ||
    '<p class="empty">No devices.</p>';
  $("#dev-type").innerHTML = Object.keys(conf.dev_meta).map(t => '<option value="' + esc(t) + '">' +
    esc(conf.dev_meta[t]) + "</option>").join("");
  loadUsers(false);
  loadWifi();
}

async function saveParams(e) {
  // the load management form or the MQTT form: each has its field list
  e.preventDefault();
  const f = e.target;
  clearErrors(f);
  const v = read(f, f.fields, {}), body = {};
  for (const k in v) if (JSON.stringify(v[k]) !== JSON.stringify(conf[k])) body[k] = v[k];
  if (!Object.keys(body).length) return note(f, "nothing changed");
  try {
    await api("set_params", null, body);
    Object.assign(conf, body);
    if ("ocpp_password" in body) { conf.ocpp_password_set = body.ocpp_password !== ""; delete conf.ocpp_password; }
    note(f, "saved");
  } catch (err) {
    showError(f, err);
  }
}

function editDevice(d) {
  const f = $("#dev-edit"), evse = d.dev_type.startsWith("evse_"), pb = d.dev_type.endsWith("_powerbrain");
  const meters = conf.devices.filter(x => !x.dev_type.startsWith("evse_")).map(x => [x.dev_id, x.name || x.dev_id]);
  const fields = DEVICE.filter(x => pb || x[3] !== "pb").concat(evse ? EVSE : METER)
    .map(x => x[0] === "attach" ? ["attach", x[1], "o", [["", "none"]].concat(meters)] : x);
  f.fields = fields;
  f.dev = d;
  f.innerHTML = "<h3>" + (d.dev_id ? "Edit " + esc(d.dev_id) : "New: " + esc(conf.dev_meta[d.dev_type])) + "</h3>" +
    fields.map(x => field(x, d[x[0]])).join("") +
    buttons("Save device", ' <button type="button" class="link" data-cancel>Cancel</button>');
  f.hidden = false;
  f.scrollIntoView({ block: "nearest" });
}

async function saveDevice(e) {
  e.preventDefault();
  const f = $("#dev-edit");
  clearErrors(f);
  const d = read(f, f.fields, { dev_type: f.dev.dev_type });
  if (f.dev.dev_id) d.dev_id = f.dev.dev_id;
  try {
    await api("set_params", null, { devices: [d] });
    f.hidden = true;
    await loadSettings();
  } catch (err) {
    showError(f, err);
  }
}

async function deviceAction(e) {
  const b = e.target.closest("button"), it = e.target.closest("[data-dev]");
  if (!b || !it) return;
  const d = conf.devices.find(x => x.dev_id === it.dataset.dev);
  if (b.hasAttribute("data-edit")) return editDevice(d);
  if (!b.classList.contains("really")) {
    // the second click deletes (no browser dialog)
    b.classList.add("really");
    b.textContent = "Really delete " + d.dev_id + "?";
    return;
  }
  try {
    await api("del_device", { dev_id: d.dev_id });
    $("#dev-edit").hidden = true;
    await loadSettings();
  } catch (err) {
    b.textContent = err.message;
  }
}

async function loadUsers(ask) {
  // the users need the admin login: asked for only when the admin wants to see them
  const list = $("#users"), login = $("#users-login"), add = $("#user-add");
  const none = text => {
    list.innerHTML = '<p class="empty">' + esc(text) + "</p>";
    login.hidden = false;
    add.hidden = true;
  };
  if (!auth && !ask) return none("Users are shown to the admin only.");
  try {
    users = await api("get_users");
  } catch (e) {
    return none(e.message);
  }
  login.hidden = true;
  add.hidden = false;
  list.innerHTML = users.map(u => '<div class="item" data-user="' + esc(u.id) + '"><span><b>' + esc(u.name || u.id) +
    "</b> <small>" + esc(u.id) + " · " + u.rfids.length + " RFID" + (u.rfids.length === 1 ? "" : "s") +
    '</small></span><button type="button" class="link" data-edit>Edit</button></div>').join("") ||
    '<p class="empty">No users.</p>';
}

function editUser(u) {
  const f = $("#user-edit");
  f.user = u;
  f.innerHTML = "<h3>User " + esc(u.id) + "</h3>" + USER.map(x => field(x, u[x[0]])).join("") +
    buttons("Save user", ' <button type="button" class="link" data-cancel>Cancel</button>');
  f.hidden = false;
  f.scrollIntoView({ block: "nearest" });
}

async function saveUser(e) {
  e.preventDefault();
  const f = $("#user-edit");
  clearErrors(f);
  const u = read(f, USER, { id: f.user.id });
  try {
    await api("set_user", null, u);
    f.hidden = true;
    await loadUsers(true);
  } catch (err) {
    showError(f, err);
  }
}

async function addUser() {
  try {
    const id = await api("get_new_user_id");
    editUser({ id, name: "", display: true, dev_ids: [], rfids: [], charging_rules: [] });
  } catch (e) {
    note($("#user-edit"), e.message, true);
  }
}

// ---- backup (INTEGRATIONS.md §6): the whole configuration as a file, restored in 4 KB pieces ----

async function getBackup() {
  const f = $("#backup");
  try {
    const text = await api("get_config", null, undefined, "raw");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    a.download = "pbctl-backup-" + (conf && conf.local_time ? conf.local_time.slice(0, 10) : "config") + ".json";
    a.id = "backup-link";
    f.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    note(f, "downloaded");
  } catch (err) {
    note(f, err.message, true);
  }
}

async function restoreBackup(e) {
  e.preventDefault();
  const f = $("#backup"), file = $("#backup-file").files[0];
  if (!file) return note(f, "choose a backup file first", true);
  if (!confirm("Replace the whole configuration (devices, users, admin password) with " + file.name + "?")) return;
  try {
    const n = 4096;
    for (let off = 0; ; off += n) {
      const last = off + n >= file.size;
      await api("set_config", last ? { offset: off } : { offset: off, more: 1 }, file.slice(off, off + n), "raw");
      if (last) break;
    }
    note(f, "restored (the admin password is the backup's)");
    loadSettings();
  } catch (err) {
    note(f, err.message, true);
  }
}

// ---- firmware update (README "Updates over HTTP") ----

async function loadVersion() {
  try {
    const u = (await api("sys_info")).update;
    $("#fw-version").textContent = "Running version " + u.version +
      (u.tentative ? " (new: start " + u.tries + " of 3, kept once it runs 30 s)" : "") +
      (u.previous ? " · the way back: " + u.previous : "") + (u.failed ? " · " + u.failed + " did not start: rolled back" : "");
  } catch (e) {
    $("#fw-version").textContent = "";
  }
}

async function upload(e) {
  e.preventDefault();
  const f = $("#update"), file = f.bundle.files[0];
  clearErrors(f);
  if (!file) { note(f, "choose a bundle file first", true); return; }
  note(f, "uploading " + Math.round(file.size / 1024) + " KB …");
  try {
    const r = await api("update", null, file);
    note(f, "version " + r.version + " installed" + (r.restart ? "; the controller restarts" : ""));
    f.reset();
    setTimeout(loadVersion, 10000);
  } catch (err) {
    showError(f, err);
  }
}

async function changePwd(e) {
  e.preventDefault();
  const f = $("#pwd");
  clearErrors(f);
  try {
    await api("change_admin_pwd", null, { old_pwd: f.old_pwd.value, new_pwd: f.new_pwd.value }, true);
    setAuth("admin:" + f.new_pwd.value);
    f.reset();
    note(f, "password changed");
  } catch (err) {
    showError(f, err);
  }
}

function editorClick(e) {
  // add/remove rows of rules and RFIDs, cancel
  const b = e.target.closest("button");
  if (!b) return;
  if (b.hasAttribute("data-cancel")) e.currentTarget.hidden = true;
  else if (b.hasAttribute("data-del")) b.closest(".item").remove();
  else if (b.dataset.add === "rules") {
    b.previousElementSibling.insertAdjacentHTML("beforeend", ruleRow({ enabled: true, mode: 0, current: 6000,
      days: 127, time: 0, dur: 0, udur: 0 }));
  } else if (b.dataset.add === "rfids") {
    b.previousElementSibling.insertAdjacentHTML("beforeend", rfidRow({ id: "", name: "", ac_auth: true,
      ac_ovch: false, used_phases: 0 }));
  }
}

// ---- WiFi (scan_wifi, set_wifi: admin; the status from sys_info) ----

async function loadWifi() {
  let w = null;
  try { w = (await api("sys_info")).wifi; } catch (e) { /* shown by the other cards */ }
  $("#wifi-card").hidden = !w;
  if (!w) return;
  $("#wifi-status").textContent = (w.connected ? "Connected to " + w.ssid + ", address " + w.ip :
    w.ssid ? "Not connected to " + w.ssid + (w.error ? " (" + w.error + ")" : "") : "No network set") +
    (w.ap ? " · setup access point " + w.ap + " open" : "");
}

async function scanWifi() {
  const f = $("#wifi");
  clearErrors(f);
  try {
    const r = await api("scan_wifi");
    $("#wifi-nets").innerHTML = r.networks.map(n => '<div class="item" data-ssid="' + esc(n.ssid) + '"><span><b>' +
      esc(n.ssid) + "</b> <small>" + n.signal + " % · " + esc(n.security) + " · channel " + n.channel +
      '</small></span><span><button type="button" class="link">Choose</button></span></div>').join("") ||
      '<p class="empty">No networks seen.</p>';
  } catch (err) {
    showError(f, err);
  }
}

async function setWifi(e) {
  e.preventDefault();
  const f = $("#wifi");
  clearErrors(f);
  note(f, "connecting…");
  try {
    const r = await api("set_wifi", null, { ssid: f.ssid.value, password: f.password.value });
    f.password.value = "";
    note(f, "connected to " + r.ssid + ": the controller's address there is " + r.ip);
  } catch (err) {
    showError(f, err);
  }
  loadWifi();
}

// ---- pages ----

function show() {
  const s = location.hash === "#settings";
  $("#dash").hidden = s;
  $("#settings").hidden = !s;
  $("#nav-dash").className = s ? "" : "on";
  $("#nav-settings").className = s ? "on" : "";
  if (s) { loadSettings(); loadVersion(); } else draw();
}

function start() {
  $("#logout").hidden = !auth;
  $("#logout").onclick = () => {
    setAuth("");
    $("#user-edit").hidden = true;
    if (location.hash === "#settings") loadUsers(false);
  };
  $("#params").onsubmit = saveParams;
  $("#mqtt").onsubmit = saveParams;
  $("#devices").onclick = deviceAction;
  $("#dev-add").onclick = () => editDevice(Object.assign({ dev_type: $("#dev-type").value, device_enabled: 1,
    used_phases: 0, charging_rules: [], users: [] }, { name: "", desc: "", address: "", id: 1, label: "",
    min_charging_cur: 6000, max_charging_cur: 16000, prio: 1, pause_min_time: 300, attach: "",
    phase_rotation: 0, phase_switching: 0, battery_save_threshold: 0, group: 0, fixed_rfid: "", enable_snooze: true,
    enable_wakeup: true, role: 0, invert: false, is_va: false }));
  $("#dev-edit").onsubmit = saveDevice;
  $("#dev-edit").onclick = editorClick;
  $("#users").onclick = e => {
    const it = e.target.closest("[data-user]");
    if (it && e.target.closest("button")) editUser(users.find(u => u.id === it.dataset.user));
  };
  $("#users-login").onclick = () => loadUsers(true);
  $("#user-add").onclick = addUser;
  $("#user-edit").onsubmit = saveUser;
  $("#user-edit").onclick = editorClick;
  $("#pwd").onsubmit = changePwd;
  $("#wifi").onsubmit = setWifi;
  $("#wifi-scan").onclick = scanWifi;
  $("#wifi-nets").onclick = e => {
    const it = e.target.closest("[data-ssid]");
    if (it && e.target.closest("button")) { $("#wifi").ssid.value = it.dataset.ssid; $("#wifi").password.focus(); }
  };
  $("#backup-get").onclick = getBackup;
  $("#backup").onsubmit = restoreBackup;
  $("#update").onsubmit = upload;
  window.addEventListener("hashchange", show);
  window.addEventListener("resize", draw);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  show();
  poll();
}

start();
