"""The ctypes layer (skipllama/_lib.py): its mirrors of the public structs against the C
compiler's view of include/skipllama.h (size, alignment, every field's offset and size; needs a
C compiler, $CC else cc, skipped without one), that every function it declares exists in the
library, and the library discovery rules (run in child processes with their own environment)."""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from _support import PYDIR, ROOT, skipllama

from skipllama import _lib

CC = os.environ.get("CC") or "cc"


@unittest.skipIf(shutil.which(CC) is None, "no C compiler (%s) to read the header's layouts" % CC)
@unittest.skipIf(not os.path.exists(os.path.join(ROOT, "include", "skipllama.h")), "include/skipllama.h not found")
class TestAbi(unittest.TestCase):
    def test_struct_layouts(self):
        lines = ["#include <stdio.h>", "#include <stddef.h>", "#include \"skipllama.h\"", "int main(void) {"]
        for name, cls in _lib.STRUCTS.items():
            lines.append('printf("%s %%zu %%zu\\n", sizeof(%s), _Alignof(%s));' % (name, name, name))
            for field, _ in cls._fields_:
                lines.append('printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                             % (name, field, name, field, name, field))
        lines.append('printf("enum %zu\\n", sizeof(sl_status));')
        lines.append("return 0; }")
        tmp = tempfile.mkdtemp(prefix="skipllama-abi-")
        try:
            src = os.path.join(tmp, "abi.c")
            exe = os.path.join(tmp, "abi")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            subprocess.run([CC, "-std=c11", "-I", os.path.join(ROOT, "include"), src, "-o", exe], check=True)
            out = subprocess.run([exe], stdout=subprocess.PIPE, check=True).stdout.decode()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        c = {}
        for line in out.splitlines():
            k, *v = line.split()
            c[k] = tuple(int(n) for n in v)
        self.assertEqual(c["enum"][0], ctypes.sizeof(_lib.c_enum))
        for name, cls in _lib.STRUCTS.items():
            self.assertEqual(c[name], (ctypes.sizeof(cls), ctypes.alignment(cls)), name)
            for field, ftype in cls._fields_:
                self.assertEqual(c["%s.%s" % (name, field)], (getattr(cls, field).offset, ctypes.sizeof(ftype)),
                                 "%s.%s" % (name, field))

    def test_functions_exist(self):
        handle = skipllama._lib.lib.handle()
        for name in _lib._DECLS:
            self.assertTrue(hasattr(handle, name), name)



class TestDiscovery(unittest.TestCase):
    def child(self, code, **env):
        e = dict(os.environ)
        e.pop("SKIPLLAMA_LIB", None)
        e.update(env)
        e["PYTHONPATH"] = PYDIR
        p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e,
                           cwd=tempfile.gettempdir())
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def test_env_file_and_folder(self):
        path = skipllama.lib_path()
        for value in (path, os.path.dirname(path)):
            rc, out = self.child("import skipllama; print(skipllama.lib_path())", SKIPLLAMA_LIB=value)
            self.assertEqual(rc, 0, out)
            self.assertEqual(os.path.realpath(out.strip()), os.path.realpath(path))

    def test_explicit_library_that_fails_is_an_error(self):
        code = ("import skipllama\n"
                "try:\n    skipllama.lib_path()\nexcept OSError as e:\n    print('OSError', e)\n")
        rc, out = self.child(code, SKIPLLAMA_LIB="/nonexistent/libskipllama.so")
        self.assertEqual(rc, 0, out)  # importing never fails; the first use reports it
        self.assertIn("OSError", out)
        self.assertIn("/nonexistent/libskipllama.so", out)

    def test_load_library_after_use(self):
        path = skipllama.lib_path()
        self.assertIsNotNone(skipllama.load_library(path))  # the same library: fine
        with self.assertRaises(RuntimeError):
            skipllama.load_library(os.path.join(tempfile.gettempdir(), "other", "libskipllama.so"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
