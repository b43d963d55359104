// reference.mjs — Hugging Face's own answers for tests/test_hf_text.c: token ids of a set of
// strings under four real tokenizer.json files (@lenml/tokenizers, a port of transformers.js's
// tokenizers), and chat templates rendered by @huggingface/jinja (as transformers renders them):
// the real templates shipped in those packages' tokenizer_config.json plus the ones committed in
// tests/data/chat/*.jinja. Prints one JSON document on stdout.
//
//   node tests/hf/reference.mjs NODE_MODULES_DIR TEMPLATE_DIR
import fs from 'fs';
import path from 'path';
import { TokenizerLoader } from '@lenml/tokenizers';
import { Template } from '@huggingface/jinja';

const [nm, tmplDir] = process.argv.slice(2);
const read = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
const tokText = (v) => (v && typeof v === 'object') ? v.content : (v || '');

// strings: plain text, contractions, digit runs, whitespace runs, newlines and tabs, accents,
// CJK, emoji, code, special-token text inside ordinary text, and the empty string
const strings = [
  "Hello world",
  "Hello, world! It's a 12345-piece puzzle; they'll say: \"we've done it\".",
  "  leading and trailing spaces  ",
  "multiple   spaces\tand\ttabs\n\nand\r\nnewlines\n",
  "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
  "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
  "emoji: \ud83d\ude00\ud83d\udc4d\ud83c\udffd and \u2603",
  "def f(x):\n    return x ** 2  # square\n",
  "3.14159 1,000,000 2024-06-01 0x1F",
  "<|im_start|>user\nHi<|im_end|>",
  // (not "</s>": llama.cpp, and so skipllama, makes "</s>" a control token in every vocabulary that
  // has it, also where it is an ordinary token, as in Qwen's)
  "<s>[INST] What? [/INST]",
  "<start_of_turn>user\nhello<end_of_turn>",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
  "a",
  "",
];

const tokenizers = {};
for (const name of ['qwen3', 'llama3_1', 'gemma3', 'llama2']) {
  const dir = path.join(nm, '@lenml', 'tokenizer-' + name, 'models');
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: read(path.join(dir, 'tokenizer.json')),
    tokenizerConfig: read(path.join(dir, 'tokenizer_config.json')),
  });
  tokenizers[name] = { dir, ids: strings.map((s) => Array.from(tok.encode(s, { add_special_tokens: false }))) };
}

const S = 'You are a helpful assistant';
const conversations = [
  [{ role: 'user', content: 'Hello' }],
  [{ role: 'system', content: S }, { role: 'user', content: 'Hello' }],
  [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi there' }, { role: 'user', content: 'Who are you' }],
  [{ role: 'system', content: S }, { role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi there' },
   { role: 'user', content: 'Who are you' }, { role: 'assistant', content: '   I am an assistant   ' },
   { role: 'user', content: 'Another question' }],
  [{ role: 'user', content: '  spaced out \n' }, { role: 'assistant', content: 'ok\n' }, { role: 'user', content: 'line one\nline two' }],
];

const templates = [];
const addTemplate = (name, text, bos, eos) => {
  const t = new Template(text);
  const cases = conversations.map((messages) => {
    try {
      return t.render({ messages, add_generation_prompt: true, bos_token: bos, eos_token: eos });
    } catch (e) {
      return null; // the template refuses this conversation (e.g. a system message)
    }
  });
  templates.push({ name, template: text, bos, eos, cases });
};
for (const name of ['qwen3', 'llama3_1', 'gemma3']) {
  const cfg = read(path.join(nm, '@lenml', 'tokenizer-' + name, 'models', 'tokenizer_config.json'));
  addTemplate(name, cfg.chat_template, tokText(cfg.bos_token), tokText(cfg.eos_token));
}
for (const f of fs.readdirSync(tmplDir).filter((f) => f.endsWith('.jinja')).sort()) {
  const text = fs.readFileSync(path.join(tmplDir, f), 'utf8');
  addTemplate(f.replace(/\.jinja$/, ''), text, '<s>', '</s>');
}

process.stdout.write(JSON.stringify({ strings, tokenizers, conversations, templates }));
