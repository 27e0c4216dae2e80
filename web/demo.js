// The demo page of carte agent: lists the readers, shows the card events, reads the Vitale, the CPS,
// verifies the PIN (typed here, or on the reader's pad when the field is empty) and signs.
import { CarteAgent, CarteAgentError } from "./cartekit-agent.js";

// ws:// from an http page, wss:// (the agent's local CA, once trusted) from an https one.
const secure = location.protocol === "https:";
const port = new URLSearchParams(location.search).get("agent") || (secure ? "9744" : "9743");
const agent = new CarteAgent({ url: `${secure ? "wss" : "ws"}://127.0.0.1:${port}/carte.agent/1` });
const $ = (id) => document.getElementById(id);
window.cartekitDemo = { agent, events: [], errors: [] };   // for the tests that drive this page

function log(label, value) {
  $("log").textContent = `${label}\n${JSON.stringify(value, null, 2)}\n\n` + $("log").textContent;
}

function fail(label, e) {
  const kind = e instanceof CarteAgentError ? e.kind : "error";
  window.cartekitDemo.errors.push({ label, kind, code: e.code, triesLeft: e.triesLeft });
  log(`${label}: ${kind}`, { message: e.message, triesLeft: e.triesLeft });
  return kind;
}

async function refresh() {
  try {
    const r = await agent.readers();
    $("readers").replaceChildren(...r.slots.map((s) => {
      const tr = document.createElement("tr");
      for (const text of [s.reader, s.state, s.card ?? "—"]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
    window.cartekitDemo.readers = r.slots;
  } catch (e) { fail("readers", e); }
}

agent.on("event", (e) => {
  window.cartekitDemo.events.push(e);
  $("events").textContent = `${new Date().toLocaleTimeString()} ${e.kind} ${e.reader}${e.card ? " (" + e.card + ")" : ""}\n` + $("events").textContent;
  refresh();
});
agent.on("close", () => { $("status").textContent = "déconnecté"; $("status").className = "bad"; });
agent.on("open", () => { $("status").textContent = `connecté (${agent.hello.agent})`; $("status").className = "ok"; });

$("refresh").onclick = refresh;
$("read-vitale").onclick = async () => {
  try {
    const v = await agent.readVitale();
    window.cartekitDemo.vitale = v;
    $("people").replaceChildren(...v.people.map((p) => {
      const tr = document.createElement("tr");
      for (const text of [`${p.firstName} ${p.surname}`, p.nir, p.rights]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
    $("vitale-note").textContent = v.syntheticLayout ? "Données de test synthétiques (aucune personne réelle)." : "";
    log("vitale.read", { reader: v.reader, people: v.people.length });
  } catch (e) { fail("vitale.read", e); }
};
$("cps-info").onclick = async () => {
  try {
    const c = await agent.cpxInfo();
    window.cartekitDemo.cpx = c;
    $("cps-result").textContent = `${c.holder.firstName} ${c.holder.surname} — ${c.holder.professionLabel ?? ""} (${c.pin?.triesLeft ?? "?"} essais)`;
    log("cpx.info", { holder: c.holder, generation: c.generation });
  } catch (e) { fail("cpx.info", e); }
};
$("verify").onclick = async () => {
  const pin = $("pin").value || undefined;
  $("pin").value = "";                       // sent once, kept nowhere
  try {
    const r = await agent.verifyPIN({ pin });
    window.cartekitDemo.verified = r;
    $("cps-result").textContent = `Code vérifié (${r.entry === "pin-pad" ? "clavier du lecteur" : "saisi ici"})`;
  } catch (e) {
    const kind = fail("cpx.pin.verify", e);
    $("cps-result").textContent = kind === "pin-refused" ? `Code refusé : ${e.triesLeft} essai(s) restant(s)` : e.message;
  }
};
$("sign").onclick = async () => {
  const pin = $("pin").value || undefined;
  $("pin").value = "";
  try {
    const s = await agent.sign("ordonnance", { pin });
    window.cartekitDemo.signature = s;
    $("cps-result").textContent = `Signé (${atob(s.signature).length} octets, ${s.algorithm})`;
    log("cpx.sign", { algorithm: s.algorithm, bytes: atob(s.signature).length, origin: s.origin });
  } catch (e) { fail("cpx.sign", e); }
};

async function start() {
  await agent.connect();
  await agent.subscribe();
  await refresh();
  window.cartekitDemo.ready = true;
}

try {
  await start();
} catch (e) {
  fail("connect", e);
  $("status").className = "bad";
  // Not allowed (or no agent): ask for a pairing code the user confirms on this workstation.
  try {
    const p = await agent.pair();
    window.cartekitDemo.pairing = { code: p.code };
    $("status").textContent = `page non autorisée : pour l'autoriser, tapez « ${p.command} » sur ce poste`;
    await p.paired;
    await start();
  } catch (e2) {
    fail("pair", e2);
    $("status").textContent = e.message;
  }
}
