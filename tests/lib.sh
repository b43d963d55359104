# lib.sh — the preamble every tests/cli_*.sh sources first (`. tests/lib.sh`; the scripts run from
# the repository root, as tests/run_tests.sh runs them): B (the build folder: $BUILD, else build),
# SL (its skipllama binary), T (a scratch folder removed on exit; a script that sets its own EXIT
# trap removes "$T" there too), the failure count `fails` with the `ok` / `bad` lines that
# run_tests.sh counts, `skip` (exit 77) and `expect_fail`. What it is not: a test (run_tests.sh runs
# tests/cli_*.sh only) or the server's helpers (tests/server/lib.sh).
B=${BUILD:-build}
SL="$B/skipllama"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

# ok TEXT / bad TEXT: one check's "ok TEXT" or "not ok TEXT" line; bad counts a failure
ok() { echo "ok $*"; }
bad() { echo "not ok $*"; fails=$((fails + 1)); }

# skip REASON: the script cannot run here (a tool is missing): "skipped: REASON", exit 77 (SKIPPED)
skip() {
    echo "skipped: $*"
    exit 77
}

# expect_fail NAME CMD...: must exit 1..127 (an error, never a signal) with a message on stderr;
# standard input is /dev/null
expect_fail() {
    name=$1; shift
    "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
    if [ $rc -ge 1 ] && [ $rc -lt 128 ] && [ -s "$T/err" ]; then ok "$name (exit $rc: $(head -c 150 "$T/err" | tr '\n' ' '))"
    else bad "$name (exit $rc)"; cat "$T/err"; fi
}
