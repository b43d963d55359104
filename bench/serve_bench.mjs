// serve_bench.mjs — throughput and time to first token of a running `skipllama serve` (no npm
// packages: node's fetch). Used by bench/serve_bench.sh, which starts the servers; timing never
// decides a test.
//
// usage: node bench/serve_bench.mjs PORT STREAMS N_GEN [--ttft] [--label L]
//   STREAMS concurrent streamed completions of N_GEN tokens each (greedy, EOS forbidden through
//   logit_bias so every stream runs to N_GEN), distinct 8-token prompts. Prints one JSON line:
//   aggregate generated tokens/s over the wall time from the first request to the last token
//   (prompts included), the mean per-stream decode speed the server reports, and the server's
//   achieved MLP sparsity, and (from /metrics) the union of the slots' own neuron selections, the
//   neurons read per pass and the own-mask recall of shared sets (docs/server.md). --ttft instead sends one 128-token prompt (token ids) with max_tokens 1
//   while STREAMS-1 other streams generate, and reports the time to its first token.
const [port, streamsArg, nGenArg, ...rest] = process.argv.slice(2);
const streams = Number(streamsArg), nGen = Number(nGenArg);
const ttft = rest.includes("--ttft");
const label = rest.includes("--label") ? rest[rest.indexOf("--label") + 1] : "";
const base = `http://127.0.0.1:${port}`;
const props = await (await fetch(`${base}/props`)).json();
const words = ["whale", "ship", "sea", "storm", "harpoon", "captain", "island", "night"];

async function stream(body) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "", tFirst = 0, usage = null, timings = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, cut); buf = buf.slice(cut + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const j = JSON.parse(line.slice(6));
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
      if (!tFirst && j.choices?.[0]?.text) tFirst = performance.now();
    }
  }
  return { t0, tFirst, tEnd: performance.now(), usage, timings };
}

const gen = (i) => stream({ prompt: `The ${words[i % 8]} and the ${words[(i + 3) % 8]} of the ${words[(i + 5) % 8]}`, max_tokens: nGen,
  temperature: 0, logit_bias: { "2": -100 } });

if (ttft) {
  const others = Array.from({ length: streams - 1 }, (_, i) => gen(i));
  if (streams > 1) await new Promise((r) => setTimeout(r, 300)); // let them reach decoding
  // a prompt no slot has cached (a repeated one would be served from the slot's KV cache)
  const off = 1 + Math.floor(Math.random() * 100000);
  const ids = Array.from({ length: 128 }, (_, i) => 3 + ((i * 7919 + off * 104729) % (props.n_vocab - 3)));
  const one = await stream({ prompt: ids, max_tokens: 1, temperature: 0, logit_bias: { "2": -100 } });
  await Promise.all(others);
  console.log(JSON.stringify({ label, kind: "ttft", streams, prompt_tokens: 128, ttft_ms: one.tFirst - one.t0,
    server_prompt_ms: one.timings?.prompt_ms, server_queue_ms: one.timings?.queue_ms }));
} else {
  const m0 = await (await fetch(`${base}/metrics`)).text();
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: streams }, (_, i) => gen(i)));
  const t1 = Math.max(...res.map((r) => r.tEnd));
  const tokens = res.reduce((a, r) => a + r.usage.completion_tokens, 0);
  const per = res.map((r) => r.timings.predicted_per_second);
  const sp = res.map((r) => r.timings.sparsity).filter((x) => x !== null);
  const metric = (txt, name) => Number((txt.match(new RegExp(`\\n${name} ([0-9.e+-]+)`)) || [])[1]);
  const m1 = await (await fetch(`${base}/metrics`)).text();
  const steps = metric(m1, "skipllama_decode_steps_total") - metric(m0, "skipllama_decode_steps_total");
  const d = (name) => metric(m1, name) - metric(m0, name);
  const passes = d("skipllama_batch_passes_total"), sel = d("skipllama_batch_own_selected_total");
  console.log(JSON.stringify({ label, kind: "gen", streams, n_gen: nGen, tokens, wall_s: (t1 - t0) / 1000,
    aggregate_tps: tokens / ((t1 - t0) / 1000), per_stream_tps: per.reduce((a, b) => a + b, 0) / per.length,
    sparsity: sp.length ? sp.reduce((a, b) => a + b, 0) / sp.length : null, steps, tokens_per_step: tokens / steps,
    batch_select: props.batch_select ?? null,
    union_ratio: passes > 0 ? d("skipllama_batch_union_neurons_total") / (passes * props.n_ff) : null,
    read_ratio: passes > 0 ? d("skipllama_batch_read_neurons_total") / (passes * props.n_ff) : null,
    own_recall: sel > 0 ? d("skipllama_batch_own_kept_total") / sel : null }));
}
