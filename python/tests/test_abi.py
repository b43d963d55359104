"""The ctypes mirrors of the public structs (skipllama/_lib.py) against the C compiler's view of
include/skipllama.h: size, alignment and every field's offset and size. Needs a C compiler
($CC, else cc); skipped without one. Also checks that every function the package declares
exists in the library."""
import ctypes
import os
import shutil
import subprocess
import tempfile
import unittest

from _support import ROOT, skipllama

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
