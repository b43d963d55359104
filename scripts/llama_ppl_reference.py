#!/usr/bin/env python3
"""llama_ppl_reference.py — the reference of tests/data/tiny-silu.llama-ppl.json: llama.cpp's own
perplexity of a text by llama-perplexity's method, computed from the llama.cpp oracle
(a folder where `npm install node-llama-cpp` ran, given as $ORACLE): the text tokenized by llama.cpp with BOS, cut into whole chunks
of CTX tokens, each chunk's first token replaced by BOS, evaluated from an empty cache, and the
log-probability llama.cpp gives each of the tokens at positions CTX/2 + 1 .. CTX - 1 (the second
half: what llama-perplexity scores). Then PPL = exp(mean NLL) and its "+/-" as llama-perplexity
prints them. Run by hand (never by the build or the tests):

  ORACLE=/path/to/installed/oracle python3 scripts/llama_ppl_reference.py MODEL.gguf TEXT BYTES CTX[,CTX...] > OUT.json

TEXT's first BYTES bytes are used (the test cuts the same bytes with head -c).
"""
import json, math, os, subprocess, sys, tempfile

oracle = os.environ.get("ORACLE")
if not oracle:
    sys.exit("llama_ppl_reference.py: set ORACLE to a folder where `npm install node-llama-cpp` ran")
model, text_path, nbytes, ctxs = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(c) for c in sys.argv[4].split(",")]
with open(text_path, "rb") as f:
    data = f.read(nbytes)
with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as t:
    t.write(data)
tok = json.loads(subprocess.check_output(["node", os.path.join(oracle, "tokenize.mjs"), model, t.name], cwd=oracle))
os.unlink(t.name)
ids = tok["ids_with_bos"]
bos = ids[0] if len(ids) > len(tok["ids_no_bos"]) else -1
out = {"model": os.path.basename(model), "text": text_path, "bytes": nbytes, "tokens_with_bos": ids, "bos": bos,
       "method": "llama-perplexity: chunks of ctx tokens, first token -> BOS, positions ctx/2..ctx-2 scored",
       "oracle": None, "results": []}
for ctx in ctxs:
    n_chunk = len(ids) // ctx
    nll = nll2 = 0.0
    count = 0
    for i in range(n_chunk):
        chunk = ids[i * ctx:(i + 1) * ctx]
        if bos >= 0:
            chunk[0] = bos
        res = json.loads(subprocess.check_output(["node", os.path.join(oracle, "logprobs.mjs"), model, ",".join(map(str, chunk)), "1"],
                                                 cwd=oracle))
        out["oracle"] = res["oracle"]
        for j in range(ctx // 2, ctx - 1):
            p = res["positions"][j]
            assert p["target"] == ids[i * ctx + j + 1]
            v = -p["target_logprob"]
            nll += v
            nll2 += v * v
            count += 1
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    out["results"].append({"ctx": ctx, "chunks": n_chunk, "scored": count, "nll_mean": mean, "ppl": ppl,
                           "ppl_err": ppl * math.sqrt(var / (count - 1))})
json.dump(out, sys.stdout, indent=1)
print()
