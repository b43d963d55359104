"""No copy of a 100 MB weight is made by the Python binding.

Weights of 1024 x 25600 float32 (104.9 MB each). Three independent checks:
  - pointer identity: the addresses the library reads (SparseMLP.weight_pointers, the cache
    entry) are the arrays' own data addresses, for numpy arrays and for torch tensors sharing them;
  - tracemalloc (numpy registers its buffers with it): the whole first call, which prepares the
    operator, allocates well under 1% of one weight on the Python side (the test first shows
    that a copy of the weight would be seen);
  - RSS: with down given pre-transposed (the .T view of a contiguous [I, H] matrix) preparing
    and calling the operator grows the process by far less than one weight (nothing is copied
    anywhere, C included); with down in its [H, I] layout it grows by about one weight — the
    transposed copy the library documents (skipllama.h) — and not by more.
"""
import os
import tracemalloc
import unittest

from _support import need_numpy, need_torch, np, skipllama, torch

H, I = 1024, 25600
MB = 1 << 20


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@need_numpy
@unittest.skipUnless(os.path.exists("/proc/self/statm"), "needs /proc/self/statm (Linux)")
class TestNoCopy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.gate = rng.random((I, H), dtype=np.float32) - 0.5
        cls.up = rng.random((I, H), dtype=np.float32) - 0.5
        cls.down = rng.random((H, I), dtype=np.float32) - 0.5
        cls.x = rng.random((1, H), dtype=np.float32)
        cls.mask = rng.random((1, I)) < 0.1
        skipllama.clear_cache()

    @classmethod
    def tearDownClass(cls):
        skipllama.clear_cache()
        del cls.gate, cls.up, cls.down

    def test_sizes(self):
        self.assertGreaterEqual(self.gate.nbytes, 100e6)

    def test_tracemalloc_sees_no_copy(self):
        skipllama.clear_cache()
        tracemalloc.start()
        try:
            # sensitivity: a copy of the weight is seen
            tracemalloc.reset_peak()
            c = np.array(self.down, copy=True)
            copy_peak = tracemalloc.get_traced_memory()[1]
            del c
            self.assertGreaterEqual(copy_peak, self.down.nbytes)
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            out = skipllama.sparse_mlp_forward(self.x, self.gate, self.up, self.down, self.mask, "silu", n_threads=1)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        self.assertEqual(out.shape, (1, H))
        print("\n# tracemalloc peak of the first call: %.1f KiB (one weight: %.1f MiB)" % (peak / 1024, self.down.nbytes / MB), end="\n")
        self.assertLess(peak, self.down.nbytes // 100)
        # the cached operator reads the arrays themselves
        op = next(iter(skipllama.op._cache.values()))
        self.assertEqual(op.weight_pointers[:3], (self.gate.ctypes.data, self.up.ctypes.data, self.down.ctypes.data))
        self.assertFalse(op.copied)
        skipllama.clear_cache()

    def test_rss_pretransposed_down(self):
        down_t_view = self.down.reshape(I, H).T  # any [I, H] contiguous matrix, seen as [H, I]
        self.assertTrue(down_t_view.flags.f_contiguous)
        before = rss()
        op = skipllama.SparseMLP(self.gate, self.up, down_t_view, "silu", n_threads=1)
        op(self.x, self.mask)
        grown = rss() - before
        print("\n# RSS growth, down pre-transposed: %.1f MiB" % (grown / MB), end="\n")
        self.assertLess(grown, 16 * MB)
        self.assertEqual(op.weight_pointers, (self.gate.ctypes.data, self.up.ctypes.data, None, self.down.ctypes.data))
        op.close()

    def test_rss_down_transposed_by_the_library(self):
        before = rss()
        op = skipllama.SparseMLP(self.gate, self.up, self.down, "silu", n_threads=1)
        op(self.x, self.mask)
        grown = rss() - before
        print("\n# RSS growth, down transposed by the library: %.1f MiB (documented: one down, %.1f MiB)"
              % (grown / MB, self.down.nbytes / MB), end="\n")
        self.assertLess(grown, 1.2 * self.down.nbytes)
        self.assertGreaterEqual(op.memory_bytes, self.down.nbytes)
        op.close()

    @need_torch
    def test_torch_tensors_are_read_in_place(self):
        tg, tu, td = (torch.from_numpy(a) for a in (self.gate, self.up, self.down))
        before = rss()
        op = skipllama.SparseMLP(tg, tu, td.reshape(I, H).t(), "silu", n_threads=1)
        out = op(torch.from_numpy(self.x), torch.from_numpy(self.mask))
        grown = rss() - before
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(op.weight_pointers, (tg.data_ptr(), tu.data_ptr(), None, td.data_ptr()))
        self.assertLess(grown, 16 * MB)
        op.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
