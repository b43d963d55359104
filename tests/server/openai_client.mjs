// openai_client.mjs — drives `skipllama serve` with the official `openai` npm package (tests/cli_server.sh).
//
// usage: node openai_client.mjs NPM_DIR PORT EXPECT_DIR
// EXPECT_DIR holds what `skipllama run` printed for the same prompts and seeds (greedy.txt,
// sampled.txt, chat.txt) and the chat message (chat_user.txt). Prints "ok ..." / "not ok ..."
// lines (tests/run_tests.sh counts them) and exits 1 on any failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const [npmDir, port, expectDir] = process.argv.slice(2);
const require = createRequire(npmDir + "/");
const OpenAI = require("openai").default ?? require("openai");
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "test-key-123", maxRetries: 0, timeout: 60000 });
const want = (f) => readFileSync(`${expectDir}/${f}`, "utf8");
let failures = 0;
const check = (cond, what, detail = "") => {
  console.log(`${cond ? "ok" : "not ok"} ${what}${!cond && detail ? ` — ${detail}` : ""}`);
  if (!cond) failures++;
};
const PROMPT = "It was a dark and stormy night";

try {
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  check(ids.length === 1 && ids[0] === "tiny-silu", `models.list() gives the served model (${ids.join(",")})`);

  const c = await client.completions.create({ model: "tiny-silu", prompt: PROMPT, max_tokens: 24, temperature: 0 });
  check(c.choices[0].text === want("greedy.txt"), "completions.create, greedy: text equals `skipllama run --temp 0`",
        JSON.stringify([c.choices[0].text, want("greedy.txt")]));
  check(c.object === "text_completion" && c.usage.completion_tokens === 24 && c.usage.total_tokens === c.usage.prompt_tokens + 24 &&
        c.choices[0].finish_reason === "length", "completions: object, usage and finish_reason");

  const s = await client.completions.create({ model: "tiny-silu", prompt: PROMPT, max_tokens: 24, temperature: 0.9, seed: 7 });
  check(s.choices[0].text === want("sampled.txt"), "completions.create, temperature 0.9 seed 7: text equals `skipllama run --seed 7`",
        JSON.stringify([s.choices[0].text, want("sampled.txt")]));

  const user = want("chat_user.txt");
  const ch = await client.chat.completions.create({ model: "tiny-silu", messages: [{ role: "user", content: user }], max_tokens: 20, temperature: 0 });
  check(ch.choices[0].message.content === want("chat.txt") && ch.choices[0].message.role === "assistant",
        "chat.completions.create, greedy: content equals `skipllama run` on the ChatML prompt",
        JSON.stringify([ch.choices[0].message.content, want("chat.txt")]));
  check(ch.object === "chat.completion" && ch.usage.completion_tokens === 20, "chat: object and usage");

  const stream = await client.chat.completions.create({ model: "tiny-silu", messages: [{ role: "user", content: user }], max_tokens: 20,
                                                        temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "", chunks = 0, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta?.content) text += choice.delta.content;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  check(text === want("chat.txt"), `chat stream: ${chunks} chunks add up to the same content`, JSON.stringify([text, want("chat.txt")]));
  check(finish === "length" && usage && usage.completion_tokens === 20, "chat stream: finish_reason and the usage chunk");

  const cs = await client.completions.create({ model: "tiny-silu", prompt: PROMPT, max_tokens: 24, temperature: 0, stream: true });
  let ctext = "";
  for await (const chunk of cs) ctext += chunk.choices[0]?.text ?? "";
  check(ctext === want("greedy.txt"), "completions stream adds up to the greedy text");

  try {
    await client.chat.completions.create({ model: "tiny-silu", messages: [], max_tokens: 5 });
    check(false, "an empty message list is refused");
  } catch (e) {
    check(e.status === 400 && e.error?.type === "invalid_request_error" && e.constructor.name === "BadRequestError",
          `an empty message list raises BadRequestError (400: ${e.message})`);
  }
  const bad = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "wrong", maxRetries: 0 });
  try {
    await bad.models.list();
    check(false, "a wrong API key is refused");
  } catch (e) {
    check(e.status === 401 && e.constructor.name === "AuthenticationError", `a wrong API key raises AuthenticationError (${e.status})`);
  }
} catch (e) {
  check(false, "the client ran", String(e && e.stack || e));
}
process.exit(failures ? 1 : 0);
