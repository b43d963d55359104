#!/bin/sh
# Runs each test program given as an argument (from the repository root, so tests find
# tests/data), then every tests/cli_*.sh script. Prints one line per program and the closing
# "N passed, N failed" line; exits non-zero when anything failed.
passed=0
failed=0
failed_names=""
for t in "$@"; do
    name=$(basename "$t")
    if "$t" > "${t}.log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS $name ($(grep -c '^ok ' "${t}.log") checks)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        echo "FAIL $name — last lines of ${t}.log:"
        tail -n 20 "${t}.log" | sed 's/^/    /'
    fi
done
# CLI-level test scripts: every tests/cli_*.sh, run with BUILD set
for script in tests/cli_*.sh; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .sh)
    log="${BUILD:-build}/$name.log"
    if BUILD="${BUILD:-build}" sh "$script" > "$log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS $name ($(grep -c '^ok ' "$log") checks)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        echo "FAIL $name — last lines of $log:"
        tail -n 20 "$log" | sed 's/^/    /'
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failed:$failed_names"; exit 1; }
