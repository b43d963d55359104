"""skipllama.Model against the `skipllama` CLI on the fixtures (tests/data/tiny-*.gguf).

What it checks
  - logits(ids) equals `skipllama logits --ids ...` bit for bit (same threads, both layouts:
    one batch and --incremental) and the PyTorch reference file within 1e-4;
  - perplexity(text) equals `skipllama ppl --json` on the first 4096 tokens of eval.txt (dense,
    and with a CATS profile made by `skipllama calibrate`, where the per-layer sparsity, recall and
    precision must match too);
  - generate() streams exactly the text `skipllama run` prints, greedy and sampled with a seed;
  - tokenize/detokenize match `skipllama tokenize` and the fixture's prompt ids;
  - sparsity_stats() after sparse decoding; errors carry the C message and status.
The CLI prints ppl with 6 decimals and per-layer numbers with 4, so those are compared at that
precision; logits are compared exactly.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from _support import cli_path, data, need_cli, need_numpy, np, skipllama

from skipllama import SkipLlamaError

MODEL = data("tiny-silu.gguf")
PROMPT = "It was a dark and stormy night"
PROMPT_IDS = [1, 985, 369, 262, 1108, 271, 659, 1961, 1966, 1970, 1087]


def run_cli(*args):
    p = subprocess.run([cli_path()] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise AssertionError("skipllama %s failed (%d): %s" % (" ".join(map(str, args)), p.returncode,
                                                               p.stderr.decode("utf-8", "replace")))
    return p.stdout


class TestModelBasics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = skipllama.Model(MODEL, n_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.m.close()

    def test_config(self):
        c = self.m.config
        self.assertEqual((c["n_vocab"], c["n_embd"], c["n_ff"], c["n_layer"]), (2048, 128, 384, 4))
        self.assertEqual(c["act"], "silu")
        self.assertEqual(self.m.n_params, 1049728)
        self.assertEqual(self.m.n_ctx, 256)
        self.assertIn("n_layer", self.m.describe())

    def test_tokenize_detokenize(self):
        ids = self.m.tokenize(PROMPT)
        self.assertEqual(ids, PROMPT_IDS)
        self.assertEqual(self.m.tokenize(PROMPT, add_bos=False), PROMPT_IDS[1:])
        self.assertEqual(self.m.detokenize(ids, remove_special=True).strip(), PROMPT)
        self.assertEqual(self.m.tokenize(PROMPT.encode()), ids)
        self.assertEqual(b"".join(self.m.token_to_piece(t) for t in ids[1:]).decode().strip(), PROMPT)
        text = "Holmes said: «Élémentaire» — 42 €\n"
        self.assertEqual(self.m.detokenize(self.m.tokenize(text, add_bos=False)), text)
        self.assertEqual(self.m.tokenize(""), [self.m.bos])

    @need_cli
    def test_tokenize_matches_cli(self):
        text = "Mr. Sherlock Holmes, who was usually very late in the mornings"
        out = run_cli("tokenize", "-m", MODEL, "-p", text).decode().split()
        self.assertEqual([int(t) for t in out], self.m.tokenize(text))

    def test_errors(self):
        with self.assertRaises(SkipLlamaError) as cm:
            skipllama.Model(data("no-such-model.gguf"))
        self.assertEqual(cm.exception.status, 2)  # SL_ERR_IO
        self.assertIn("no-such-model.gguf", str(cm.exception))
        with self.assertRaises(SkipLlamaError) as cm:
            self.m.detokenize([1, 5000])
        self.assertEqual(cm.exception.status, 6)  # SL_ERR_RANGE
        if np is not None:
            with self.assertRaises(SkipLlamaError) as cm:
                self.m.logits([1, 2048])
            self.assertEqual(cm.exception.status, 6)
            self.assertTrue(str(cm.exception))
            with self.assertRaises(SkipLlamaError):
                self.m.logits(list(range(1, 300)))  # longer than the context
        with self.assertRaises(SkipLlamaError) as cm:
            skipllama.Model(MODEL, profile=data("tiny-relu.gguf"))  # not a profile
        self.assertTrue(str(cm.exception))
        with self.assertRaises(SkipLlamaError):
            self.m.generate("x", top_p=2.0)

    def test_vocab_only(self):
        with skipllama.Model(MODEL, vocab_only=True) as v:
            self.assertEqual(v.tokenize(PROMPT), PROMPT_IDS)
            with self.assertRaises(ValueError):
                v.logits(PROMPT_IDS)

    @need_numpy
    def test_generator_refuses_a_shared_context(self):
        g = self.m.generate(PROMPT, max_tokens=20, temperature=0)
        next(g)
        self.m.logits(PROMPT_IDS)
        with self.assertRaises(RuntimeError):
            for _ in g:
                pass


@need_numpy
@need_cli
class TestAgainstCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="skipllama-py-")
        with open(data("eval.txt"), encoding="utf-8") as f:
            cls.eval_text = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli_logits(self, model, ids, *extra):
        path = os.path.join(self.tmp, "logits.f32")
        run_cli("logits", "-m", model, "--ids", ",".join(map(str, ids)), "-o", path, *extra)
        return np.fromfile(path, dtype=np.float32)

    def test_logits(self):
        for name in ("tiny-silu", "tiny-relu", "tiny-silu-q8_0", "tiny-silu-bf16"):
            with skipllama.Model(data(name + ".gguf"), n_threads=1) as m:
                py = m.logits(PROMPT_IDS)
                self.assertEqual(py.shape, (len(PROMPT_IDS), 2048))
                self.assertTrue(np.array_equal(py.reshape(-1), self.cli_logits(data(name + ".gguf"), PROMPT_IDS)), name)
                inc = m.logits(PROMPT_IDS, incremental=True)
                self.assertTrue(np.array_equal(inc.reshape(-1), self.cli_logits(data(name + ".gguf"), PROMPT_IDS,
                                                                                 "--incremental")), name)
                ref_file = data(name + ".logits.f32")
                if os.path.exists(ref_file):  # PyTorch's logits
                    ref = np.fromfile(ref_file, dtype=np.float32).reshape(py.shape)
                    self.assertLess(float(np.max(np.abs(py - ref))), 1e-4, name)
                # eval() continues a sequence: the same rows
                m.reset()
                first = m.eval(PROMPT_IDS[:5], all_logits=True)
                last = m.eval(PROMPT_IDS[5:])
                self.assertTrue(np.array_equal(first, py[:5]))
                self.assertLess(float(np.max(np.abs(last - py[-1]))), 1e-4)
                self.assertEqual(m.n_past, len(PROMPT_IDS))

    def ppl_cli(self, *extra):
        return json.loads(run_cli("ppl", "-m", MODEL, "-f", data("eval.txt"), "--max-tokens", 4096, "-t", 2, "--json",
                                  *extra))

    def test_perplexity_dense(self):
        want = self.ppl_cli("-c", 128)
        with skipllama.Model(MODEL, n_threads=2) as m:
            calls = []
            r = m.perplexity(self.eval_text, ctx=128, max_tokens=4096, progress=lambda d, t: calls.append((d, t)))
        self.assertEqual((r.n_tokens, r.n_scored, r.n_windows, r.ctx),
                         (want["tokens"], want["scored"], want["windows"], want["ctx"]))
        self.assertAlmostEqual(r.ppl, want["ppl"], delta=1.5e-6)
        self.assertAlmostEqual(r.nll_mean, want["nll_mean"], delta=1.5e-6)
        self.assertTrue(calls and calls[-1][0] == calls[-1][1])
        print("\n# ppl (4096 tokens, ctx 128): python %.6f, cli %.6f" % (r.ppl, want["ppl"]), end="\n")

    def test_perplexity_and_stats_with_profile(self):
        prof = os.path.join(self.tmp, "tiny-silu.skip.gguf")
        run_cli("calibrate", "-m", MODEL, "-f", data("train-slice.txt"), "--sparsity", 0.5, "--max-tokens", 2048,
                "-o", prof, "-q")
        want = self.ppl_cli("--profile", prof)
        with skipllama.Model(MODEL, profile=prof, n_threads=2) as m:
            self.assertEqual(m.profile_method, "cats")
            self.assertEqual([l["rule"] for l in m.profile_layers()], ["cats"] * 4)
            r = m.perplexity(self.eval_text, max_tokens=4096)
            self.assertAlmostEqual(r.ppl, want["ppl"], delta=1.5e-6)
            self.assertAlmostEqual(r.mlp_sparsity, want["mlp_sparsity"], delta=1e-4)
            for got, exp in zip(r.layers, want["layers"]):
                self.assertEqual(got["rule"], exp["rule"])
                for k in ("sparsity", "recall", "precision", "true_density"):
                    self.assertAlmostEqual(got[k], exp[k], delta=1e-4, msg="layer %d %s" % (exp["layer"], k))
            print("\n# ppl with a 50%% CATS profile: python %.6f, cli %.6f, MLP sparsity %.3f"
                  % (r.ppl, want["ppl"], r.mlp_sparsity), end="\n")
            # sparse decoding through generate(): the decoding path skips neurons
            m.reset_stats()
            m.track_recall(True)
            text = m.generate_text(PROMPT, max_tokens=16, temperature=0)
            self.assertTrue(text)
            st = m.sparsity_stats()
            self.assertEqual(len(st), 4)
            for s in st:
                self.assertGreater(s["n_sparse_tokens"], 0)
                self.assertTrue(0.2 < s["sparsity"] < 0.8, s)
                self.assertIsNotNone(s["recall"])
            m.set_profile(None)  # dense again
            self.assertIsNone(m.profile_method)

    def cli_run(self, *extra):
        out = run_cli("run", "-m", MODEL, "-p", PROMPT, "-t", 1, "--no-display-prompt", *extra)
        self.assertTrue(out.endswith(b"\n"))
        return out[:-1].decode("utf-8")

    def test_generate_greedy(self):
        want = self.cli_run("-n", 40, "--temp", 0)
        with skipllama.Model(MODEL, n_threads=1) as m:
            chunks = list(m.generate(PROMPT, max_tokens=40, temperature=0))
            self.assertGreater(len(chunks), 1)  # streamed
            self.assertEqual("".join(chunks), want)
            self.assertEqual(m.last_generation["stop"], "max_tokens")
            self.assertEqual(len(m.last_generation["ids"]), 40)
            # the fixture's greedy continuation (PyTorch)
            with open(data("tiny-silu.json"), encoding="utf-8") as f:
                fx = json.load(f)
            self.assertEqual(m.last_generation["ids"][:32], fx["greedy_ids"])

    def test_generate_sampled(self):
        for seed in (7, 12345):
            want = self.cli_run("-n", 48, "--temp", 0.9, "--top-k", 50, "--top-p", 0.9, "--min-p", 0.02, "--seed", seed)
            with skipllama.Model(MODEL, n_threads=1) as m:
                got = m.generate_text(PROMPT, max_tokens=48, temperature=0.9, top_k=50, top_p=0.9, min_p=0.02, seed=seed)
            self.assertEqual(got, want, "seed %d" % seed)

    def test_generate_until_context_full(self):
        with skipllama.Model(MODEL, n_ctx=32, n_threads=1) as m:
            text = m.generate_text(PROMPT, max_tokens=None, temperature=0)
            self.assertIn(m.last_generation["stop"], ("context_full", "eog"))
            want = run_cli("run", "-m", MODEL, "-p", PROMPT, "-t", 1, "-c", 32, "--temp", 0, "--no-display-prompt")[:-1].decode()
            self.assertEqual(text, want)


if __name__ == "__main__":
    unittest.main(verbosity=2)
