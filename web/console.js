// CarteKit QA console (carte sim console): shows the simulator daemon's virtual readers and drives
// them through the console's /api, following its feed of server-sent events (docs/simulator.md).
// Plain ES module, no build step, no dependency. PIN digits typed on the page's keypad live only in
// this page until they are sent; they are never shown, logged or kept.

const state = {
  ready: false,          // a first status was shown
  daemonUp: false,
  status: null,          // the daemon's status answer
  images: [],            // bundled images offered for insertion
  traces: new Map(),     // slot name → rows (events of that slot)
  selected: null,        // slot whose trace is shown
  ui: new Map(),         // slot name → {image, fault, count, ms, sw, digits}
  errors: [],
  actions: 0,            // actions answered
  lastExport: null,      // {name, text} of the last export
};
window.cartekitConsole = state;

// The run's key: the address carte sim console printed carries it in its fragment (never sent to a
// server); this tab keeps it in its session storage (per origin, so per port) and sends it in a header.
const KEY_HEADER = "X-CarteKit-Console-Key";
const KEY_STORE = "cartekit-console-key";
let key = sessionStorage.getItem(KEY_STORE);
{
  const m = /(?:^#|&)key=([0-9A-Za-z]+)/.exec(location.hash);
  if (m) {
    key = m[1];
    sessionStorage.setItem(KEY_STORE, key);
    history.replaceState(null, "", location.pathname);
  }
}

const MAX_ROWS = 5000;     // kept per slot
const SHOWN_ROWS = 600;    // drawn at once (the newest that pass the filter)
const FAULTS = [
  ["remove-before", "Pull out before next APDU"],
  ["remove-during", "Pull out during next APDU"],
  ["remove-after", "Pull out after next APDU"],
  ["mute", "Mute (N APDUs)"],
  ["slow", "Slow (ms per APDU)"],
  ["sw", "Status word (N APDUs)"],
  ["reset", "Warm reset"],
];
const KIND_LABEL = { vitale1: "Carte Vitale 1", vitale2: "Carte Vitale 2", cps3: "CPS3", cps3Contactless: "CPS3 (contactless)", cps4: "CPS4", apcv: "appli carte Vitale", unknown: "Card" };
const KIND_COLOUR = { vitale1: "#2f8f4e", vitale2: "#2f8f4e", cps3: "#2457a6", cps3Contactless: "#2457a6", cps4: "#2457a6", apcv: "#6b3fa0", unknown: "#6d7480" };

const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children.flat()) if (c) e.append(c);
  return e;
}

function message(text, bad = false) {
  const m = el("div", { class: "message" + (bad ? " bad" : ""), text });
  $("#messages").append(m);
  setTimeout(() => m.remove(), bad ? 9000 : 4000);
  if (bad) state.errors.push(text);
}

function uiOf(slot) {
  if (!state.ui.has(slot)) state.ui.set(slot, { image: "", fault: "mute", count: "1", ms: "500", sw: "6F00", digits: "" });
  return state.ui.get(slot);
}

// ---- actions ----

async function act(action, body) {
  let answer;
  try {
    const r = await fetch("/api/" + action, { method: "POST", headers: { "Content-Type": "application/json", [KEY_HEADER]: key }, body: JSON.stringify(body) });
    answer = await r.json();
  } catch (e) {
    answer = { ok: false, error: "the console does not answer: " + e };
  }
  state.actions++;
  if (!answer.ok) message(answer.error || "refused", true);
  return answer;
}

async function insert(slot, image) {
  if (!image) { message("Choose an image to insert first.", true); return; }
  const a = await act("insert", { slot, image });
  if (a.ok) message(`Inserted ${image.replace("bundled:", "")} into ${slot}`);
}

async function upload(slot, file) {
  if (!file) return;
  if (file.size > 1 << 20) { message(`${file.name} is larger than 1 MiB: not a card image`, true); return; }
  const text = await file.text();
  const a = await act("insert", { slot, upload: { name: file.name, text } });
  if (a.ok) message(`Inserted ${file.name} into ${slot}`);
}

async function remove(slot) {
  const a = await act("remove", { slot });
  if (a.ok) message(`Removed the card from ${slot}`);
}

async function fault(slot, name) {
  const u = uiOf(slot);
  const body = { slot, fault: name };
  if (name === "mute" || name === "sw") body.count = parseInt(u.count, 10);
  if (name === "slow") body.ms = parseInt(u.ms, 10);
  if (name === "sw") body.sw = u.sw;
  const a = await act("fault", body);
  if (a.ok) message(name === "clear" ? `Faults cleared on ${slot}` : `Armed ${a.fault || name} on ${a.reader || slot}`);
}

async function keypad(slot, entry) {
  const a = await act("keypad", { slot, entries: [entry] });
  if (a.ok) message(`Keypad of ${slot}: ${entry.digits !== undefined ? entry.digits.length + " digits and OK" : entry.cancel ? "Cancel" : "left to time out"}`);
}

// ---- readers ----

function readerPicture(reader) {
  const n = reader.slots.length;
  const width = 150, height = 64;
  const g = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${reader.name}: ${n} slot${n > 1 ? "s" : ""}` });
  g.append(svg("rect", { x: 4, y: 22, width: 142, height: 38, rx: 7, fill: "#3a4150" }));
  reader.slots.forEach((slot, i) => {
    const x = 14 + i * (124 / n), w = 124 / n - 10;
    if (slot.contactless) {
      for (let r = 0; r < 3; r++) g.append(svg("path", { d: `M ${x + w / 2 - 8 - r * 5} ${14 - r * 3} q ${8 + r * 5} ${-8 - r * 2} ${16 + r * 10} 0`, stroke: "#9aa4b5", fill: "none", "stroke-width": 2 }));
    } else {
      g.append(svg("rect", { x, y: 24, width: w, height: 4, rx: 2, fill: "#141820" }));
    }
    if (slot.state !== "empty") {
      const colour = slot.state === "mute" ? "#7a1f1a" : KIND_COLOUR[slot.kind] || KIND_COLOUR.unknown;
      g.append(svg("rect", { x: x + 3, y: slot.contactless ? 2 : 3, width: w - 6, height: slot.contactless ? 16 : 23, rx: 3, fill: colour, stroke: "#fff", "stroke-width": 1 }));
      if (!slot.contactless) g.append(svg("rect", { x: x + 8, y: 8, width: 9, height: 7, rx: 1, fill: "#e7c86a" }));
    }
  });
  if (reader.pinPad) {
    for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) g.append(svg("rect", { x: 108 + c * 11, y: 34 + r * 8, width: 8, height: 5, rx: 1, fill: "#c9ced8" }));
  }
  g.append(svg("circle", { cx: 14, cy: 52, r: 3, fill: reader.slots.some(s => s.state === "card") ? "#5fd38b" : "#6b7383" }));
  return g;
}

function imageOptions(slot) {
  const u = uiOf(slot.name);
  const select = el("select", { "aria-label": `Image to insert into ${slot.name}`, "data-focus": `${slot.name}/image`, onchange: e => { u.image = e.target.value; } },
    el("option", { value: "", text: "bundled image…" }));
  const wanted = slot.role === "vitale" ? ["vitale", "demo"] : slot.role === "cpx" ? ["cps"] : null;
  const groups = new Map();
  for (const image of state.images) {
    const g = image.group || "other";
    if (!groups.has(g)) groups.set(g, el("optgroup", { label: g }));
    groups.get(g).append(el("option", { value: image.spec, text: image.name + (image.synthetic === "true" ? "" : " (not synthetic)"), selected: u.image === image.spec }));
  }
  const order = [...groups.keys()].sort((a, b) => (wanted && wanted.includes(b) ? 1 : 0) - (wanted && wanted.includes(a) ? 1 : 0));
  for (const g of order) select.append(groups.get(g));
  return select;
}

function faultControls(slot, usb) {
  const u = uiOf(slot.name);
  const names = usb ? FAULTS.concat([["unplug", "Unplug reader (USB)"], ["plug", "Plug reader back (USB)"]]) : FAULTS;
  const select = el("select", { "aria-label": `Fault to arm on ${slot.name}`, "data-focus": `${slot.name}/fault`, onchange: e => { u.fault = e.target.value; refreshFaultFields(); } },
    names.map(([v, label]) => el("option", { value: v, text: label, selected: u.fault === v })));
  const count = el("input", { type: "number", min: 1, max: 10000, value: u.count, title: "APDUs", "aria-label": "how many APDUs", "data-focus": `${slot.name}/count`, oninput: e => { u.count = e.target.value; } });
  const ms = el("input", { type: "number", min: 1, max: 60000, value: u.ms, title: "milliseconds per APDU", "aria-label": "milliseconds per APDU", "data-focus": `${slot.name}/ms`, oninput: e => { u.ms = e.target.value; } });
  const sw = el("input", { type: "text", class: "sw", maxlength: 4, value: u.sw, title: "status word", "aria-label": "status word", "data-focus": `${slot.name}/sw`, oninput: e => { u.sw = e.target.value; } });
  function refreshFaultFields() {
    count.hidden = !(u.fault === "mute" || u.fault === "sw");
    ms.hidden = u.fault !== "slow";
    sw.hidden = u.fault !== "sw";
  }
  refreshFaultFields();
  return el("div", { class: "row" }, select, count, ms, sw,
    el("button", { type: "button", text: "Arm", "data-focus": `${slot.name}/arm`, onclick: () => fault(slot.name, u.fault) }),
    el("button", { type: "button", text: "Clear faults", "data-focus": `${slot.name}/clear`, onclick: () => fault(slot.name, "clear") }));
}

function keypadPanel(slot, pad) {
  const u = uiOf(slot.name);
  const waiting = slot.keypad && slot.keypad.waiting;
  const lcd = el("div", { class: "lcd", "aria-live": "polite", "aria-label": "digits typed", text: "•".repeat(u.digits.length) });
  const max = pad.maximumPINLength || 16;
  const press = d => { if (u.digits.length < Math.min(max, 16)) { u.digits += d; lcd.textContent = "•".repeat(u.digits.length); } };
  const correct = () => { u.digits = u.digits.slice(0, -1); lcd.textContent = "•".repeat(u.digits.length); };
  const ok = () => {
    if (!u.digits) { message("Type the PIN's digits first.", true); return; }
    const digits = u.digits; u.digits = ""; lcd.textContent = "";
    keypad(slot.name, { digits });
  };
  const cancel = () => { u.digits = ""; lcd.textContent = ""; keypad(slot.name, { cancel: true }); };
  const key = (label, f, cls, focus) => el("button", { type: "button", class: cls, text: label, "data-focus": `${slot.name}/key-${focus || label}`, onclick: f });
  const pad3 = el("div", { class: "pad", role: "group", "aria-label": `PIN pad of ${slot.name}` },
    ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map(d => key(d, () => press(d))),
    key("Cancel", cancel, "cancel"), key("0", () => press("0")), key("OK", ok, "ok"));
  const panel = el("div", { class: "keypad" + (waiting ? " waiting" : ""), tabindex: 0, "data-focus": `${slot.name}/keypad`,
    "aria-label": `PIN pad of ${slot.name}: type digits, Enter validates, Escape cancels, Backspace corrects` },
    pad3,
    el("div", { class: "pad-info" },
      waiting ? el("span", { class: "prompt", text: "The reader asks for a PIN" }) : el("span", { text: "PIN pad" }),
      lcd,
      el("div", { class: "row" }, key("Correct", correct, null, "correct"),
        el("button", { type: "button", text: "Time out", "data-focus": `${slot.name}/key-timeout`, title: "Let the PIN prompt time out (queued for the next prompt when the reader is not asking now)",
          onclick: () => keypad(slot.name, { timeout: true }) })),
      el("span", { text: `${slot.keypad ? slot.keypad.pending : 0} entr${slot.keypad && slot.keypad.pending === 1 ? "y" : "ies"} waiting · ${pad.minimumPINLength}–${pad.maximumPINLength} digits` })));
  panel.addEventListener("keydown", e => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (/^[0-9]$/.test(e.key)) { press(e.key); e.preventDefault(); }
    else if (e.key === "Backspace") { correct(); e.preventDefault(); }
    else if (e.key === "Enter" && e.target === panel) { ok(); e.preventDefault(); }
    else if (e.key === "Escape") {
      // Cancel reaches the pad only while it asks for a PIN; otherwise Escape just clears the digits.
      if (waiting) cancel(); else { u.digits = ""; lcd.textContent = ""; }
      e.preventDefault();
    }
  });
  return panel;
}

function slotPanel(reader, slot, usb) {
  const role = slot.contactless ? "Contactless" : slot.role === "vitale" ? "Vitale slot" : slot.role === "cpx" ? "CPx slot" : `Slot ${slot.slot}`;
  let card;
  if (slot.state === "empty") {
    card = el("div", { class: "card empty" }, el("div", { class: "title", text: "No card" }), el("div", { text: "Insert a bundled image or upload one." }));
  } else {
    const title = slot.state === "mute" ? "Mute card" : KIND_LABEL[slot.kind] || "Card";
    card = el("div", { class: `card ${slot.state === "mute" ? "mute" : slot.kind || "unknown"}` },
      el("div", { class: "title" }, title, slot.synthetic ? el("span", { class: "badge", text: "synthetic" }) : null),
      el("div", { text: slot.image || "" }),
      slot.atr ? el("div", { class: "atr", text: "ATR " + slot.atr }) : null);
  }
  const file = el("input", { type: "file", accept: ".yaml,.yml,application/yaml,text/yaml", hidden: true, onchange: e => { upload(slot.name, e.target.files[0]); e.target.value = ""; } });
  const faults = el("div", { class: "faults", "aria-label": "faults armed" },
    slot.faults && slot.faults.length ? slot.faults.map(f => el("span", { class: "chip", text: f })) : el("span", { class: "none", text: "no fault armed" }));
  const panel = el("div", { class: "slot" + (state.selected === slot.name ? " selected" : ""), "data-slot": slot.name },
    el("h3", {}, el("span", { text: role }), el("span", { class: "name", text: slot.name })),
    card,
    el("div", { class: "row" }, imageOptions(slot),
      el("button", { type: "button", class: "primary", text: "Insert", "data-focus": `${slot.name}/insert`, onclick: () => insert(slot.name, uiOf(slot.name).image) }),
      el("button", { type: "button", text: "Upload…", title: "Insert a card image file (YAML)", "data-focus": `${slot.name}/upload`, onclick: () => file.click() }), file,
      el("button", { type: "button", class: "danger", text: "Remove", disabled: slot.state === "empty", "data-focus": `${slot.name}/remove`, onclick: () => remove(slot.name) })),
    faultControls(slot, usb), faults,
    reader.pinPad && slot.keypad ? keypadPanel(slot, reader.pinPad) : null);
  panel.addEventListener("focusin", () => selectSlot(slot.name, false));
  return panel;
}

function renderReaders() {
  const root = $("#readers");
  const focused = document.activeElement && document.activeElement.getAttribute("data-focus");
  root.replaceChildren();
  const readers = state.status ? state.status.readers : [];
  if (!readers.length) root.append(el("p", { class: "empty", text: state.daemonUp ? "The daemon serves no reader." : "Waiting for the simulator daemon…" }));
  for (const reader of readers) {
    const meta = [reader.vendor, reader.firmwareVersion && "firmware " + reader.firmwareVersion].filter(Boolean).join(" · ");
    root.append(el("article", { class: "reader", "aria-label": reader.name },
      el("div", { class: "reader-head" }, readerPicture(reader),
        el("div", {}, el("h2", { text: reader.name }),
          el("div", { class: "meta" }, meta, reader.synthetic ? el("span", { class: "badge synthetic", text: "synthetic" }) : null,
            reader.pinPad ? el("span", { class: "badge pinpad", text: "PIN pad" }) : null))),
      el("div", { class: "slots" }, reader.slots.map(slot => slotPanel(reader, slot, !!state.status.usb)))));
  }
  if (focused) {
    const again = root.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  renderTabs();
}

// ---- trace ----

function slotNames() {
  return state.status ? state.status.readers.flatMap(r => r.slots.map(s => s.name)) : [];
}

function selectSlot(name, focusTab = true) {
  if (state.selected === name) return;
  state.selected = name;
  for (const p of document.querySelectorAll(".slot")) p.classList.toggle("selected", p.getAttribute("data-slot") === name);
  renderTabs(focusTab);
  renderTrace();
}

function renderTabs(focus = false) {
  const tabs = $("#trace-tabs");
  const names = slotNames();
  if (!state.selected || !names.includes(state.selected)) {
    state.selected = names[0] || null;
    renderTrace();
  }
  tabs.replaceChildren(...names.map(name => el("button", {
    type: "button", role: "tab", "aria-selected": String(name === state.selected), text: name.replace(/^CarteKit Virtual /, ""), title: name,
    tabindex: name === state.selected ? 0 : -1, onclick: () => selectSlot(name),
  })));
  tabs.onkeydown = e => {
    const i = names.indexOf(state.selected);
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = names[(i + (e.key === "ArrowRight" ? 1 : names.length - 1)) % names.length];
      selectSlot(next);
      tabs.querySelector('[aria-selected="true"]').focus();
      e.preventDefault();
    }
  };
  if (focus) { const t = tabs.querySelector('[aria-selected="true"]'); if (t) t.focus(); }
}

function hexCell(text, limit) {
  // Runs of ?? are a PIN or PUK the daemon removed. Long data shows its first `limit` bytes; the
  // whole value is in the cell's title.
  const td = el("td", { class: "hex", title: text.length > 3 * limit ? text : null });
  const bytes = text.split(" ");
  const shown = bytes.length > limit ? bytes.slice(0, limit - 2).concat(["…"], bytes.slice(-2)) : bytes;
  const parts = shown.join(" ").split(/((?:\?\? ?)+)/);
  for (const p of parts) {
    if (!p) continue;
    if (p.startsWith("??")) td.append(el("span", { class: "redacted", text: `‹PIN: ${p.trim().split(" ").length} bytes redacted›` }), " ");
    else td.append(p);
  }
  if (bytes.length > limit) td.append(el("span", { class: "more", text: ` (${bytes.length} bytes)` }));
  return td;
}

function timeOf(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function rowFor(event) {
  if (event.type === "exchange") {
    const sw = event.sw || "";
    const cls = !sw ? "err" : sw === "9000" || sw.startsWith("61") || sw.startsWith("9F") ? "ok" : /^(62|63|6C)/.test(sw) ? "warn" : "err";
    const command = hexCell(event.command, 24);
    if (event.viaPad) command.prepend(el("span", { class: "pad-mark", text: "[PIN pad] " }));
    return el("tr", { class: cls },
      el("td", { class: "num", text: event.seq }), el("td", { class: "time", text: timeOf(event.at) }), command,
      event.response ? hexCell(event.response, 18) : el("td", { text: "—" }),
      el("td", { class: "status", text: event.sw ? `${event.sw} ${event.meaning}` : event.failure || "no answer" }),
      el("td", { class: "ms", text: event.ms.toFixed(3) }));
  }
  const text = event.type === "power" ? `card powered up, ATR ${event.atr}` : {
    inserted: "card inserted", removed: "card removed", mute: "mute card inserted", faults: "faults changed", keypad: "keypad entries typed",
    "pad-waiting": "the PIN pad asks for a PIN", "pad-done": "the PIN pad prompt ended", "reader-added": "reader plugged in", "reader-removed": "reader unplugged",
  }[event.what] || event.what;
  return el("tr", { class: "note" }, el("td", { class: "num", text: event.seq }), el("td", { class: "time", text: timeOf(event.at) }), el("td", { colspan: 4, text }));
}

function matches(event, filter, errorsOnly) {
  if (errorsOnly && !(event.type === "exchange" && (!event.sw || !(event.sw === "9000" || event.sw.startsWith("61") || event.sw.startsWith("9F"))))) return false;
  if (!filter) return true;
  const hay = (event.type === "exchange" ? [event.command, event.response || "", event.sw || "", event.meaning || "", event.failure || "", event.viaPad ? "PIN pad" : "", event.redacted ? "PIN redacted" : ""]
    : [event.atr || "", event.what || "", "power"]).join(" ").toUpperCase();
  return hay.includes(filter) || hay.replace(/ /g, "").includes(filter.replace(/ /g, ""));
}

function renderTrace() {
  const body = $("#trace-table tbody");
  const scroll = $(".trace-scroll");
  // Follows the newest rows unless the tester scrolled up to read older ones.
  const atBottom = scroll.scrollHeight - scroll.scrollTop - scroll.clientHeight < 40;
  const rows = state.traces.get(state.selected) || [];
  const filter = $("#trace-filter").value.trim().toUpperCase();
  const errorsOnly = $("#trace-errors").checked;
  const shown = rows.filter(e => matches(e, filter, errorsOnly));
  body.replaceChildren(...shown.slice(-SHOWN_ROWS).map(rowFor));
  const exchanges = rows.filter(e => e.type === "exchange").length;
  $("#trace-count").textContent = state.selected
    ? `${shown.length} of ${rows.length} events shown (${exchanges} exchanges)` + (shown.length > SHOWN_ROWS ? `, the newest ${SHOWN_ROWS} drawn` : "")
    : "no slot";
  $("#trace-export").disabled = !state.selected;
  if (atBottom) scroll.scrollTop = scroll.scrollHeight;
}

function addEvents(events) {
  let touched = false;
  for (const event of events) {
    if (!event.slot) continue;
    if (!state.traces.has(event.slot)) state.traces.set(event.slot, []);
    const rows = state.traces.get(event.slot);
    if (rows.length && rows[rows.length - 1].seq >= event.seq) continue;  // already there (a new hello)
    rows.push(event);
    if (rows.length > MAX_ROWS) rows.splice(0, rows.length - MAX_ROWS);
    if (event.slot === state.selected) touched = true;
  }
  if (touched) renderTrace();
}

async function exportTrace() {
  const slot = state.selected;
  if (!slot) return;
  const r = await fetch("/api/export?slot=" + encodeURIComponent(slot), { headers: { [KEY_HEADER]: key } });
  if (!r.ok) {
    let error = `export failed (${r.status})`;
    try { error = (await r.json()).error || error; } catch (e) { /* not JSON */ }
    message(error, true);
    return;
  }
  const text = await r.text();
  const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [null, "trace.yaml"])[1];
  state.lastExport = { name, text };
  const url = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  message(`Exported ${name}`);
}

// ---- feed ----

function showDaemon(d) {
  state.daemonUp = d.up;
  const p = $("#daemon");
  p.className = "daemon " + (d.up ? "up" : "down");
  p.textContent = d.up ? `simulator daemon ${d.socket}` : `the simulator daemon at ${d.socket} does not answer${d.error ? ": " + d.error : ""}`;
}

function handle(text) {
  let m;
  try { m = JSON.parse(text); } catch (err) { state.errors.push("bad feed message"); return; }
  if (m.type === "hello") {
    state.images = m.images || [];
    showDaemon(m.daemon);
    if (m.status) { state.status = m.status; renderReaders(); state.ready = true; }
    addEvents(m.events || []);
    renderTrace();
  } else if (m.type === "status") {
    // Drawn again only when what it shows changed (not for an exchange count), so a list a tester
    // has open is not closed under them by a program reading a card.
    const shown = s => JSON.stringify(s, (k, v) => (k === "exchanges" ? undefined : v));
    const changed = !state.status || shown(state.status) !== shown(m.status);
    state.status = m.status;
    if (changed) renderReaders();
    state.ready = true;
  } else if (m.type === "activity") {
    if (m.lost) message(`${m.lost} events were too old to show`);
    addEvents(m.events);
  } else if (m.type === "reset") {
    // Another run of the daemon: its events are numbered anew; what was shown of the old one goes.
    state.traces.clear();
    renderTrace();
    message("The simulator daemon restarted");
  } else if (m.type === "daemon") {
    showDaemon(m.daemon);
    if (!m.daemon.up) { state.status = null; renderReaders(); }
  }
}

// The feed: server-sent events read with fetch (so the key goes in a header), reconnecting with a
// growing delay; a refused key ends it with what to do.
async function follow() {
  if (!key) {
    showLocked();
    return;
  }
  let delay = 500;
  for (;;) {
    try {
      const r = await fetch("/api/feed", { headers: { [KEY_HEADER]: key }, cache: "no-store" });
      if (r.status === 401) { showLocked(); return; }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      delay = 500;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
          if (data) handle(data);
        }
      }
    } catch (e) {
      // The console stopped or the connection broke: try again.
    }
    const p = $("#daemon");
    p.className = "daemon down";
    p.textContent = "the console does not answer (reconnecting…)";
    await new Promise(resolve => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

function showLocked() {
  const p = $("#daemon");
  p.className = "daemon down";
  p.textContent = "this page needs the console's key: open the address carte sim console printed (it ends with #key=…)";
  $("#readers").replaceChildren(el("p", { class: "empty", text: "Open the address carte sim console printed: it carries the key of this console." }));
}

$("#trace-filter").addEventListener("input", renderTrace);
$("#trace-errors").addEventListener("change", renderTrace);
$("#trace-export").addEventListener("click", exportTrace);
$("#trace-clear").addEventListener("click", () => { if (state.selected) { state.traces.set(state.selected, []); renderTrace(); } });
follow();
