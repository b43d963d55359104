#!/bin/sh
# cli_valgrind.sh — one CLI run of the `skipllama` binary under valgrind's memcheck (issue 8):
# `logits` on the tiny fixture model must finish with no invalid access, no uninitialised read
# and no leak (--error-exitcode=1 makes any of them fail). Skips (exit 77, "skipped: ...") when
# valgrind is not installed. Uses the build in $BUILD (default build): run after `make`.
. tests/lib.sh
command -v valgrind > /dev/null 2>&1 || skip "valgrind is not installed"
[ -x "$SL" ] || { echo "not ok cli_valgrind: $SL missing (run make first)"; exit 1; }
# a sanitizer build cannot run under valgrind (ASan must be the first runtime loaded); the
# sanitizers check that build themselves
if ldd "$SL" 2>/dev/null | grep -q libasan; then skip "$SL is an AddressSanitizer build"; fi
if valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
    "$SL" logits -m tests/data/tiny-silu.gguf --ids 1,2,3 -o "$T/x.f32" > "$T/log" 2>&1 &&
    [ "$(wc -c < "$T/x.f32")" -eq $((3 * 2048 * 4)) ]; then
    echo "ok cli_valgrind: skipllama logits under valgrind memcheck: no errors, no leaks"
else
    echo "not ok cli_valgrind: valgrind reported errors:"
    cat "$T/log"
    exit 1
fi
