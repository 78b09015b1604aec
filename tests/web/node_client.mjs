// Drives the namewire JS client from node against a running gateway; tests/web/test_js_client.py
// runs it. Usage: node node_client.mjs MODULE_PATH GATEWAY_URL. Prints one JSON line per step;
// "kill" asks the test to kill -9 the gateway and start it again.
import { pathToFileURL } from "node:url";

const [modulePath, url] = process.argv.slice(2);
const { connect, NamewireError } = await import(pathToFileURL(modulePath).href);
const say = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));
const within = (ms, promise, what) => {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
};

try {
  await connect(url, { token: "wrong" });
  say("bad-token-accepted");
} catch (err) {
  say("bad-token", { code: err.code, isNamewireError: err instanceof NamewireError });
}

const nw = await connect(url, { token: "s3cret", minDelay: 50, maxDelay: 500 });
say("connected", { name: nw.name });
say("call", { value: await nw.call("PlusServer", "plus", 1, 2) });
say("providers", { value: await nw.providers("plus") });
try {
  await nw.call("PlusServer", "secret");
} catch (err) {
  say("not-exposed", { code: err.code, message: err.message });
}

const inbox = [];
let arrived = () => {};
nw.onMessage((msg, from) => { inbox.push({ msg, from }); arrived(); });
const nextMessage = () => inbox.length ? Promise.resolve(inbox.shift())
  : within(5000, new Promise((resolve) => { arrived = () => resolve(inbox.shift()); }), "message");

await nw.call("PlusServer", "notify", nw.name, { hi: "node" });
say("pushed", await nextMessage());
await nw.send("PlusServer", { reply_to: nw.name, text: "ping" });
say("echo", await nextMessage());

// A call in flight when the gateway dies is rejected; the client comes back by itself.
const reconnected = new Promise((resolve) => nw.onConnect(resolve));
const pending = nw.call("PlusServer", "slow", 30);
say("kill");
try {
  await within(10000, pending, "rejection of the pending call");
  say("pending-resolved");
} catch (err) {
  say("pending-rejected", { code: err.code });
}
const newName = await within(20000, reconnected, "reconnect");
say("reconnected", { name: newName, value: await nw.call("PlusServer", "plus", 2, 3) });
nw.close();
say("done");
process.exit(0);
