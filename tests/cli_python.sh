#!/bin/sh
# The Python binding's tests (python/tests/test_*.py) against $BUILD/libskipllama.so and
# $BUILD/skipllama, with Debian's python3 (/usr/bin/python3 when present: a pyenv python3 earlier
# on PATH lacks Debian's python3-numpy / python3-torch). Skips, exiting 77 with a "skipped: ..."
# line, when python3 or numpy is missing or the library was built with AddressSanitizer (a
# Python process cannot load it); tests needing torch skip themselves, each with its reason.
# Then checks that `make python`, and the documented offline pip install, give a package that
# imports from a fresh directory with no environment help. Prints "ok ..." / "not ok ..." lines;
# exits 1 on any failure.
. tests/lib.sh
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3
elif command -v python3 > /dev/null 2>&1; then PY=$(command -v python3)
else skip "python3 is not installed (Debian: apt-get install python3 python3-numpy python3-torch)"
fi
"$PY" -c "import numpy" > /dev/null 2>&1 || skip "numpy is not installed for $PY (Debian: apt-get install python3-numpy python3-torch)"
"$PY" -c "import torch" > /dev/null 2>&1 || echo "note: torch is not installed for $PY: the tests against PyTorch skip (Debian: apt-get install python3-torch)"
if [ ! -f "$B/libskipllama.so" ]; then echo "not ok: $B/libskipllama.so is missing (make BUILD=$B lib)"; exit 1; fi
if command -v ldd > /dev/null 2>&1 && ldd "$B/libskipllama.so" 2>/dev/null | grep -q 'libasan'; then
    skip "$B/libskipllama.so is built with AddressSanitizer, which a Python process cannot load"
fi

root=$(pwd)
SKIPLLAMA_LIB="$B/libskipllama.so" SKIPLLAMA_CLI="$B/skipllama" BUILD="$B" "$PY" python/tests/runtests.py || fails=$((fails + 1))

# `make python` into a scratch DESTDIR, then import it from elsewhere with no SKIPLLAMA_LIB
# (-o: install the library as built, never rebuild it from here)
if ${MAKE:-make} --no-print-directory BUILD="$B" PYTHON="$PY" -o "$B/libskipllama.so" python DESTDIR="$T" PREFIX=/usr/local > "$T/make.log" 2>&1; then
    site=$(dirname "$(find "$T" -name __init__.py -path '*skipllama*' | head -n 1)")
    site=$(dirname "$site")
    if out=$(cd "$T" && env -u SKIPLLAMA_LIB PYTHONPATH="$site" "$PY" -c "
import skipllama, numpy
m = skipllama.Model('$root/tests/data/tiny-silu.gguf', n_threads=1)
assert skipllama.lib_path().startswith('$site'), skipllama.lib_path()
print(skipllama.lib_path(), m.tokenize('It was'))" 2>&1); then
        echo "ok make python installs an importable package ($out)"
    else echo "not ok the package installed by make python does not import: $out"; fails=$((fails + 1)); fi
else
    echo "not ok make python failed:"; cat "$T/make.log"; fails=$((fails + 1))
fi
# the documented offline pip install (library copied into the package first), into a target folder
if "$PY" -m pip --version > /dev/null 2>&1 && "$PY" -c "import setuptools" > /dev/null 2>&1; then
    mkdir -p "$T/src" && cp -r python/pyproject.toml python/README.md python/skipllama "$T/src/" && rm -rf "$T/src/skipllama/__pycache__"
    cp "$B/libskipllama.so" "$T/src/skipllama/"
    if "$PY" -m pip install -q --no-build-isolation --no-deps --no-index --target "$T/pip" "$T/src" > "$T/pip.log" 2>&1 &&
        out=$(cd "$T" && env -u SKIPLLAMA_LIB PYTHONPATH="$T/pip" "$PY" -c "
import skipllama
assert skipllama.lib_path().startswith('$T/pip/'), skipllama.lib_path()
print(skipllama.__version__, skipllama.Model('$root/tests/data/tiny-silu.gguf', vocab_only=True).tokenize('It was'))" 2>&1); then
        echo "ok pip install --no-build-isolation (offline) gives an importable package ($out)"
    else echo "not ok pip install of python/:"; cat "$T/pip.log"; echo "$out"; fails=$((fails + 1)); fi
else
    echo "ok pip install check # skipped: pip or setuptools not installed for $PY (Debian: python3-pip python3-setuptools python3-wheel)"
fi
[ $fails -eq 0 ]
