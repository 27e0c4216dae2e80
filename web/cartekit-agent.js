// cartekit-agent.js — the JavaScript client of `carte agent` (protocol carte.agent/1, docs/agent.md).
// One plain ES module: no build step, no dependency. Promise-based calls, event callbacks,
// reconnection with back-off (the event subscription is renewed after a reconnection), typed errors.
//
//   import { CarteAgent } from "./cartekit-agent.js";
//   const agent = new CarteAgent();                    // ws://127.0.0.1:9743/carte.agent/1
//   await agent.connect();
//   agent.on("card-inserted", (e) => console.log(e.reader, e.card));
//   await agent.subscribe();
//   const vitale = await agent.readVitale();           // the JSON of `carte read --json` (carte.vitale/1)
//   const signed = await agent.sign(new TextEncoder().encode("ordonnance"), { pin: "1234" });
//
// A PIN given to verifyPIN or sign is sent once, in that call, and kept nowhere; without one the
// holder types it on the reader's PIN pad.

/** The errors of carte.agent/1: `code` (JSON-RPC), `kind` (stable name), `triesLeft` for "pin-refused". */
export class CarteAgentError extends Error {
  constructor(code, kind, message, data = {}) {
    super(message);
    this.name = "CarteAgentError";
    this.code = code;
    this.kind = kind;
    this.triesLeft = data.triesLeft;
  }
}

/** The stable kinds (docs/agent.md). */
export const ErrorKind = Object.freeze({
  parse: "parse-error", invalidRequest: "invalid-request", methodNotFound: "method-not-found",
  invalidParams: "invalid-params", noReader: "no-reader", noCard: "no-card", pinRefused: "pin-refused",
  blocked: "blocked", timeout: "timeout", cancelled: "cancelled", busy: "busy", card: "card-error", apcvRefused: "apcv-refused", rateLimited: "rate-limited",
  unsupported: "unsupported", disconnected: "disconnected",
});

export class CarteAgent {
  /**
   * @param {object} [options]
   * @param {string} [options.url] the agent's address
   * @param {boolean} [options.reconnect] reconnect after a lost connection (default true)
   * @param {number} [options.callTimeout] milliseconds a call may take (default 120000: a PIN pad waits for the holder)
   */
  constructor({ url = "ws://127.0.0.1:9743/carte.agent/1", reconnect = true, callTimeout = 120000 } = {}) {
    this.url = url;
    this.reconnect = reconnect;
    this.callTimeout = callTimeout;
    this.hello = null;
    this._socket = null;
    this._nextId = 1;
    this._pending = new Map();
    this._listeners = new Map();
    this._subscribed = false;
    this._closedByUser = false;
    this._backoff = 500;
    this._opening = null;
  }

  /** Opens the connection (once; later calls wait for the same one) and says hello. */
  connect() {
    if (this._opening) return this._opening;
    this._closedByUser = false;
    this._opening = new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (e) {
        this._opening = null;
        reject(new CarteAgentError(0, ErrorKind.disconnected, `cannot open ${this.url}: ${e.message}`));
        return;
      }
      this._socket = socket;
      let opened = false;
      socket.onopen = async () => {
        opened = true;
        this._backoff = 500;
        try {
          this.hello = await this.call("hello");
          if (this._subscribed) await this.call("events.subscribe");
          this._emit("open", this.hello);
          resolve(this.hello);
        } catch (e) {
          reject(e);
        }
      };
      socket.onmessage = (m) => this._receive(m.data);
      socket.onclose = (c) => {
        this._socket = null;
        this._opening = null;
        const error = new CarteAgentError(0, ErrorKind.disconnected, `the agent closed the connection (${c.code}${c.reason ? ": " + c.reason : ""})`);
        for (const [, p] of this._pending) { clearTimeout(p.timer); p.reject(error); }
        this._pending.clear();
        this._emit("close", { code: c.code, reason: c.reason });
        if (!opened) reject(new CarteAgentError(0, ErrorKind.disconnected, `cannot reach the agent at ${this.url} (is carte agent running, and this page's origin allowed?)`));
        if (!this._closedByUser && this.reconnect && opened) this._scheduleReconnect();
      };
    });
    return this._opening;
  }

  _scheduleReconnect() {
    const delay = this._backoff;
    this._backoff = Math.min(this._backoff * 2, 8000);
    this._emit("reconnecting", { inMilliseconds: delay });
    setTimeout(() => {
      if (this._closedByUser) return;
      this.connect().catch(() => { if (!this._closedByUser) this._scheduleReconnect(); });
    }, delay);
  }

  /**
   * For a page whose origin is not allowed yet (connect() fails): asks the agent for a pairing code to
   * show the user, who confirms it with `carte agent pair CODE`. Resolves with `{code, expiresIn,
   * command, paired}`, where `paired` is a promise settled once the user confirmed (then connect()) or
   * the code expired.
   */
  async pair({ pollMilliseconds = 1000 } = {}) {
    const side = new CarteAgent({ url: this.url.replace(/\/carte\.agent\/1$/, "/carte.agent/1/pair"), reconnect: false, callTimeout: this.callTimeout });
    await side.connect();
    const request = await side.call("pair.request");
    const deadline = Date.now() + request.expiresIn * 1000;
    const paired = new Promise((resolve, reject) => {
      const poll = async () => {
        try {
          if ((await side.call("pair.status")).paired) { side.close(); resolve(true); return; }
          if (Date.now() > deadline) { side.close(); reject(new CarteAgentError(0, ErrorKind.timeout, "the pairing code expired")); return; }
          setTimeout(poll, pollMilliseconds);
        } catch (e) { side.close(); reject(e); }
      };
      setTimeout(poll, pollMilliseconds);
    });
    return { code: request.code, expiresIn: request.expiresIn, command: request.command, paired };
  }

  /** Closes the connection for good. */
  close() {
    this._closedByUser = true;
    if (this._socket) this._socket.close(1000, "client closed");
  }

  /** Calls a method; resolves with its result, rejects with a CarteAgentError. */
  call(method, params = undefined) {
    const socket = this._socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new CarteAgentError(0, ErrorKind.disconnected, "not connected to the agent"));
    }
    const id = this._nextId++;
    const message = { jsonrpc: "2.0", id, method };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CarteAgentError(0, ErrorKind.timeout, `${method}: no answer within ${this.callTimeout} ms`));
      }, this.callTimeout);
      this._pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify(message));
    });
  }

  _receive(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (m.method === "event" && m.params) {
      this._emit(m.params.kind, m.params);
      this._emit("event", m.params);
      return;
    }
    const p = this._pending.get(m.id);
    if (!p) return;
    this._pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error) {
      const d = m.error.data || {};
      p.reject(new CarteAgentError(m.error.code, d.kind || "error", m.error.message, d));
    } else {
      p.resolve(m.result);
    }
  }

  /**
   * Listens: "event" (every card event), "reader-added", "reader-removed", "card-inserted",
   * "card-removed", "card-mute", and the connection's "open", "close", "reconnecting".
   */
  on(kind, callback) {
    if (!this._listeners.has(kind)) this._listeners.set(kind, new Set());
    this._listeners.get(kind).add(callback);
    return () => this.off(kind, callback);
  }

  off(kind, callback) { this._listeners.get(kind)?.delete(callback); }

  _emit(kind, value) {
    for (const callback of this._listeners.get(kind) ?? []) {
      try { callback(value); } catch (e) { console.error(e); }
    }
  }

  /** Receives reader and card events from now on (renewed after a reconnection). */
  async subscribe() { this._subscribed = true; return this.call("events.subscribe"); }
  async unsubscribe() { this._subscribed = false; return this.call("events.unsubscribe"); }

  /** Every slot: reader, physical reader, slot index, state, card kind (carte.agent.readers/1). */
  readers() { return this.call("readers.list"); }

  /** Reads a Carte Vitale (or a phone with the appli carte Vitale), or a QR payload: carte.vitale/1. */
  readVitale({ reader, qr, date } = {}) { return this.call("vitale.read", clean({ reader, qr, date })); }

  /** The professional's CPx card: holder, certificates, PIN tries (carte.cps/1), without the PIN. */
  cpxInfo({ reader } = {}) { return this.call("cpx.info", clean({ reader })); }

  /** Verifies the CPx PIN: on the reader's pad when `pin` is absent, else the PIN given (sent once). */
  verifyPIN({ reader, pin } = {}) { return this.call("cpx.pin.verify", clean({ reader, pin })); }

  /** Signs `data` (Uint8Array, ArrayBuffer or text) with the CPx signature key after the PIN (pad or `pin`). */
  sign(data, { reader, pin } = {}) {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
    return this.call("cpx.sign", clean({ reader, pin, data: base64(bytes) }));
  }

  /** Signs a SHA-256 digest (32 bytes) the page computed, e.g. with crypto.subtle.digest (a CPS4; a CPS3 answers "unsupported"). */
  signHash(digest, { reader, pin } = {}) {
    return this.call("cpx.sign", clean({ reader, pin, hash: base64(new Uint8Array(digest)) }));
  }
}

function base64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

function clean(o) {
  const out = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) out[k] = v;
  return out;
}
