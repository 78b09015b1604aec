// namewire browser client: reach services by name through a namewire gateway.
// One ES module, no build step; served by the gateway at /namewire.js.
//
//   import { connect } from "http://127.0.0.1:8080/namewire.js";
//   const nw = await connect("ws://127.0.0.1:8080/", { token });
//   await nw.call("PlusServer", "plus", 1, 2);       // 3
//   nw.send("Chat", { text: "hi" });
//   nw.onMessage((msg, from) => console.log(from, msg));
//   await nw.providers("plus");                      // ["PlusServer"]
//
// Protocol (JSON text messages, docs/web.md): requests {"id", "op": "call"|"send"|"providers", ...}
// each answered by {"op": "result", "id", "value"} or {"op": "error", "id", "code", "message"};
// {"op": "welcome", "name"} opens a session, {"op": "msg", "from", "msg"} is a message to it.

/** An error from the gateway or the connection: `code` is machine-readable (docs/web.md). */
export class NamewireError extends Error {
  constructor(code, message, facts = {}) {
    super(message);
    this.name = "NamewireError";
    this.code = code;
    Object.assign(this, facts);
  }
}

/** Connect to a gateway; resolves once the session is open, rejects with a NamewireError. */
export async function connect(url, options = {}) {
  const nw = new Namewire(url, options);
  await nw._open();
  return nw;
}

export class Namewire {
  constructor(url, { token = null, reconnect = true, minDelay = 100, maxDelay = 5000,
                     WebSocket: WS = globalThis.WebSocket } = {}) {
    if (!WS) throw new Error("no WebSocket in this runtime: pass { WebSocket } (node: npm ws)");
    this.url = url;
    this.name = null; // this session's name in the cluster, "<gateway>/<n>"
    this.limits = null;
    this._token = token;
    this._reconnect = reconnect;
    this._minDelay = minDelay;
    this._maxDelay = maxDelay;
    this._WS = WS;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject}
    this._handlers = { message: new Set(), connect: new Set(), disconnect: new Set() };
    this._closed = false;
    this._attempt = 0;
    this._timer = null;
  }

  /** Call `func(...args)` on the service `name`; resolves with its result. */
  call(name, func, ...args) {
    return this._request({ op: "call", name, func, args });
  }

  /** Send `msg` to the service `name`; resolves once the gateway handed it over. */
  send(name, msg) {
    return this._request({ op: "send", name, msg });
  }

  /** Names of the services providing `func` that this gateway exposes. */
  providers(func) {
    return this._request({ op: "providers", func });
  }

  /** `fn(msg, from)` for every message a service sends to this session; returns an unsubscribe. */
  onMessage(fn) { return this._on("message", fn); }
  /** `fn(name)` each time a session opens (after a reconnect too: the name is new). */
  onConnect(fn) { return this._on("connect", fn); }
  /** `fn(error)` each time the connection is lost. */
  onDisconnect(fn) { return this._on("disconnect", fn); }

  /** Close for good: no reconnect; pending requests are rejected. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "closed by the client");
  }

  // -- internals ---------------------------------------------------------------------------------

  _on(kind, fn) {
    this._handlers[kind].add(fn);
    return () => this._handlers[kind].delete(fn);
  }

  _emit(kind, ...args) {
    for (const fn of this._handlers[kind]) {
      try { fn(...args); } catch (err) { console.error("namewire: handler failed", err); }
    }
  }

  _request(body) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this.name) {
      return Promise.reject(new NamewireError("disconnected", `not connected to ${this.url}`));
    }
    const id = this._nextId++;
    // id first: the gateway can answer a message it refuses to decode (too large) by its id
    const text = JSON.stringify({ id, ...body });
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      ws.send(text);
    });
  }

  _open() {
    return new Promise((resolve, reject) => {
      const target = new URL(this.url);
      if (this._token != null) target.searchParams.set("token", this._token);
      const ws = new this._WS(target.href);
      this._ws = ws;
      let welcomed = false;
      ws.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch { return; }
        if (message.op === "welcome") {
          welcomed = true;
          this.name = message.name;
          this.limits = message.limits;
          this._attempt = 0;
          this._emit("connect", this.name);
          resolve(this);
        } else {
          this._received(message);
        }
      };
      let ended = false;
      // Browsers fire error then close; node's WebSocket only error when the upgrade is refused.
      ws.onerror = () => { if (ws.readyState !== 1) ws.onclose({ code: 1006 }); };
      ws.onclose = async (event) => {
        if (ended) return;
        ended = true;
        this.name = null;
        const lost = new NamewireError(
          "disconnected", `connection to ${this.url} lost (code ${event.code})`,
          { closeCode: event.code });
        for (const { reject: fail } of this._pending.values()) fail(lost);
        this._pending.clear();
        if (!welcomed) {
          const why = await this._diagnose(target);
          reject(why);
          if (this._attempt > 0) this._retry(why);
          return;
        }
        this._emit("disconnect", lost);
        this._retry(lost);
      };
    });
  }

  _received(message) {
    if (message.op === "msg") {
      this._emit("message", message.msg, message.from);
      return;
    }
    const waiter = this._pending.get(message.id);
    if (message.op === "error" && !waiter) {
      console.warn(`namewire: ${message.code}: ${message.message}`);
      return;
    }
    if (!waiter) return;
    this._pending.delete(message.id);
    if (message.op === "result") {
      waiter.resolve(message.value);
    } else {
      const { op, id, code, message: text, ...facts } = message;
      waiter.reject(new NamewireError(code, text, facts));
    }
  }

  // A browser does not let scripts see why an upgrade was refused: ask the gateway over HTTP.
  async _diagnose(target) {
    const http = new URL(target.href);
    http.protocol = target.protocol === "wss:" ? "https:" : "http:";
    try {
      const answer = await fetch(http.href);
      const body = await answer.json();
      if (answer.status !== 426) {
        return new NamewireError(body.code, `${this.url}: ${body.message} (HTTP ${answer.status})`,
                                 { status: answer.status });
      }
      return new NamewireError("unavailable", `${this.url}: the WebSocket upgrade failed`);
    } catch {
      return new NamewireError("unavailable", `cannot reach the gateway at ${this.url}`);
    }
  }

  _retry(why) {
    const refused = why && (why.code === "unauthorized" || why.code === "origin_not_allowed");
    if (this._closed || !this._reconnect || refused) return;
    // jittered exponential backoff: many browsers must not come back in the same instant
    const base = Math.min(this._maxDelay, this._minDelay * 2 ** this._attempt);
    const delay = base * (0.5 + Math.random());
    this._attempt += 1;
    this._timer = setTimeout(() => { this._open().catch(() => {}); }, delay);
  }
}
