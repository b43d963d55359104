// page_check.mjs — the chat page in headless Chromium, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: no WebSocket, no npm package). Used by tests/cli_server_page.sh.
//
// usage: node page_check.mjs CHROMIUM URL SCREENSHOT.png
// Opens URL, types a message into the box (Input.insertText) and clicks Send; waits for the
// assistant's reply to finish and checks the DOM: the user's message, a non-empty reply that ended
// normally, its token count and speed, the header's tokens/s. Then a second message is stopped
// with the Stop button after its first tokens: the reply must end as "stopped". Saves a
// screenshot. Prints "ok ..." / "not ok ..." lines; exits 1 on any failure.
import { spawn } from "node:child_process";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [chromium, url, shot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "sl-chromium-"));
const child = spawn(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
  "--remote-debugging-pipe", `--user-data-dir=${profile}`, "--window-size=1100,720", "about:blank"],
  { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
let failures = 0;
const check = (cond, what) => { console.log(`${cond ? "ok" : "not ok"} ${what}`); if (!cond) failures++; };

let nextId = 1, buf = "";
const pending = new Map();
child.stdio[4].on("data", (d) => {
  buf += d.toString("utf8");
  let cut;
  while ((cut = buf.indexOf("\0")) >= 0) {
    const msg = JSON.parse(buf.slice(0, cut));
    buf = buf.slice(cut + 1);
    if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
  }
});
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
  child.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const timer = setTimeout(() => { console.log("not ok the page check finished within 120 s"); child.kill("SIGKILL"); process.exit(1); }, 120000);

try {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const s = (method, params) => send(method, params, sessionId);
  const js = async (expr) => (await s("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true })).result.value;
  await s("Page.enable");
  await s("Page.navigate", { url });
  for (let i = 0; i < 100 && !(await js("document.readyState === 'complete' && !!document.getElementById('model') && " +
                                        "!document.getElementById('model').textContent.includes('connecting')")); i++) await sleep(100);
  check((await js("document.getElementById('model').textContent")).includes("slots"), "the page loaded and read /props");

  // type and send a message, as a user would
  await js("document.getElementById('input').focus()");
  await s("Input.insertText", { text: "Call me Ishmael." });
  await js("document.getElementById('send').click()");
  let state = null;
  for (let i = 0; i < 300; i++) {
    state = await js(`(() => { const a = document.querySelectorAll('.msg.assistant'); const d = a[a.length - 1];
      return d && d.dataset.done ? { done: d.dataset.done, text: d.querySelector('.text').textContent, meta: d.querySelector('.meta').textContent,
        user: document.querySelector('.msg.user .text').textContent, tps: document.getElementById('tps').textContent } : null; })()`);
    if (state) break;
    await sleep(100);
  }
  check(state && state.user === "Call me Ishmael.", "the user's message is shown");
  check(state && (state.done === "stop" || state.done === "length") && state.text.length > 0,
        `the reply appeared and ended (${state && state.done}): ${JSON.stringify(state && state.text.slice(0, 60))}`);
  check(state && /tokens\/s/.test(state.meta) && /^[0-9.]+$/.test(state.tps), `the reply shows its speed (${state && state.meta}; header ${state && state.tps} tokens/s)`);
  const shotData = (await s("Page.captureScreenshot", { format: "png" })).data;
  writeFileSync(shot, Buffer.from(shotData, "base64"));
  check(true, `screenshot saved to ${shot}`);

  // Stop: a long reply stopped after its first tokens
  await js("document.getElementById('maxtok').value = 3000; document.getElementById('input').value = 'Tell me about whales.'; document.getElementById('send').click()");
  for (let i = 0; i < 200 && !(await js("document.querySelectorAll('.msg.assistant .text')[1]?.textContent.length > 0")); i++) await sleep(20);
  await js("document.getElementById('stop').click()");
  let stopped = null;
  for (let i = 0; i < 100 && !stopped; i++) { stopped = await js("document.querySelectorAll('.msg.assistant')[1]?.dataset.done || null"); await sleep(100); }
  check(stopped === "stopped", `the Stop button ends the reply (${stopped})`);
  check(await js("!document.getElementById('send').disabled && document.getElementById('stop').disabled"), "after it, Send is enabled again and Stop disabled");
  // the server noticed: the stopped stream counts as a disconnect and its slot is free again
  let freed = false, m = "";
  for (let i = 0; i < 100 && !freed; i++) {
    m = await (await fetch(new URL("/metrics", url))).text();
    freed = /\nskipllama_slots_busy 0\n/.test(m) && /\nskipllama_client_disconnects_total [1-9]/.test(m);
    if (!freed) await sleep(100);
  }
  check(freed, "the server counted the disconnect and freed the slot");
  await send("Browser.close").catch(() => {});
} catch (e) {
  check(false, `the page check ran: ${e && e.stack || e}`);
}
clearTimeout(timer);
const exited = new Promise((r) => child.on("exit", r));
child.kill("SIGKILL");
await exited;
try { rmSync(profile, { recursive: true, force: true }); } catch (e) { /* chromium's helpers may still be writing */ }
process.exit(failures ? 1 : 0);
