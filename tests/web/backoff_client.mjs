// The JS client's reconnect schedule, with a WebSocket that welcomes once and then never
// connects again; tests/web/test_js_client.py runs it. Usage: node backoff_client.mjs MODULE_PATH
// URL. Timers are run at once and their delays recorded; prints {"delays": [...]}, the
// waits before each reconnect attempt, then {"after_close": N}, the attempts after close().
import { pathToFileURL } from "node:url";

const [modulePath, url] = process.argv.slice(2);
const { connect } = await import(pathToFileURL(modulePath).href);
const ATTEMPTS = 10;

// The client asks the gateway over HTTP why a connect failed: here nobody answers, at once
// (and fetch's own timers stay out of the record).
globalThis.fetch = async () => { throw new TypeError("fetch failed"); };

const delays = [];
const realSetTimeout = globalThis.setTimeout;
let done;
const finished = new Promise((resolve) => { done = resolve; });
globalThis.setTimeout = (fn, ms) => {
  delays.push(ms);
  if (delays.length >= ATTEMPTS) done();
  return realSetTimeout(fn, 0);
};

let made = 0;
class OnceWebSocket {
  constructor() {
    made += 1;
    this.readyState = 0;
    const first = made === 1;
    queueMicrotask(() => {
      if (first) {
        this.readyState = 1;
        this.onmessage({ data: JSON.stringify({ op: "welcome", name: "gw/1", limits: {} }) });
        realSetTimeout(() => { this.readyState = 3; this.onclose({ code: 1006 }); }, 0);
      } else {
        this.readyState = 3;
        this.onerror({});
      }
    });
  }
  send() {}
  close() {}
}

const nw = await connect(url, { WebSocket: OnceWebSocket, minDelay: 100, maxDelay: 800 });
await finished;
nw.close();
const madeAtClose = made;
await new Promise((resolve) => realSetTimeout(resolve, 200));
console.log(JSON.stringify({ delays: delays.slice(0, ATTEMPTS), after_close: made - madeAtClose - 1 }));
process.exit(0);
