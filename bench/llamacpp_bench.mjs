// llamacpp_bench.mjs — times llama.cpp (through the npm package node-llama-cpp, which ships
// prebuilt CPU libraries but no llama-bench executable) the way llama-bench and `skipllama bench`
// do: "ppP" = one evaluation of a P-token prompt of random ids from an empty cache, "tgN" = N
// one-token evaluations of random ids from an empty cache, logits of the last token computed in
// each evaluation; one untimed warm-up, then R repetitions; tokens/s mean, sd, median.
// Used by bench/compare.sh; not part of the build or the tests.
//
// usage: [NODE_LLAMA_DIR=DIR] node bench/llamacpp_bench.mjs MODEL.gguf P N THREADS[,THREADS] REPS [CTX]
// prints one JSON object per row on stdout. NODE_LLAMA_DIR: a folder whose node_modules holds
// node-llama-cpp (compare.sh installs one in bench/.llama-node); otherwise normal resolution.
import {createRequire} from "node:module";
import {resolve} from "node:path";
import {pathToFileURL} from "node:url";

const nodeLlamaDir = process.env.NODE_LLAMA_DIR;
const {getLlama, LlamaLogLevel} = nodeLlamaDir
    ? await import(pathToFileURL(createRequire(resolve(nodeLlamaDir) + "/").resolve("node-llama-cpp")).href)
    : await import("node-llama-cpp");

const [modelPath, pArg, nArg, tArg, rArg, cArg] = process.argv.slice(2);
if (!modelPath) {
    console.error("usage: node llamacpp_bench.mjs MODEL.gguf P N THREADS[,T2] REPS [CTX]");
    process.exit(2);
}
const nPrompt = parseInt(pArg ?? "128"), nGen = parseInt(nArg ?? "64"), reps = parseInt(rArg ?? "5");
const threads = (tArg ?? "2").split(",").map((x) => parseInt(x));
const nCtx = parseInt(cArg ?? "0") || Math.max(nPrompt, nGen, 16);

let seed = 1234n;
function rand() { // splitmix64, as skipllama bench
    seed = (seed + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = seed;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    return z ^ (z >> 31n);
}

function stats(xs) {
    const n = xs.length, mean = xs.reduce((a, b) => a + b, 0) / n;
    const sd = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
    const s = [...xs].sort((a, b) => a - b);
    const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return {mean, sd, median};
}

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 0});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const md = model.fileInfo.metadata;
const nVocab = Number(md?.llama?.vocab_size ?? md?.tokenizer?.ggml?.tokens?.length);
const want = (tok) => [tok, {generateNext: {token: true}}]; // logits + greedy pick for this token

for (const t of threads) {
    const ctx = await model.createContext({
        contextSize: nCtx, batchSize: Math.max(nPrompt, 1), sequences: 1, threads: {ideal: t, min: t},
        flashAttention: false,
    });
    const seq = ctx.getSequence();
    const rows = [];
    if (nPrompt > 0) rows.push({label: `pp${nPrompt}`, kind: "pp", n: nPrompt});
    if (nGen > 0) rows.push({label: `tg${nGen}`, kind: "tg", n: nGen});
    for (const row of rows) {
        const samples = [];
        for (let k = 0; k <= reps; k++) { // k = 0 is the warm-up
            await seq.clearHistory();
            const toks = Array.from({length: row.n}, () => Number(rand() % BigInt(nVocab)));
            const t0 = performance.now();
            if (row.kind === "pp") {
                await seq.controlledEvaluate([...toks.slice(0, -1), want(toks[toks.length - 1])]);
            } else {
                for (const tok of toks) await seq.controlledEvaluate([want(tok)]);
            }
            const dt = (performance.now() - t0) / 1000;
            if (k > 0) samples.push(row.n / dt);
        }
        const s = stats(samples);
        console.log(JSON.stringify({engine: "llama.cpp (node-llama-cpp)", model: modelPath, n_threads: t, test: row.label,
            avg_ts: s.mean, stddev_ts: s.sd, median_ts: s.median, samples_ts: samples}));
    }
    await ctx.dispose();
}
await model.dispose();
await llama.dispose();
