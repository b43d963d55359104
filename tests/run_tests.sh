#!/bin/sh
# Runs each test program given as an argument (from the repository root, so tests find
# tests/data), then tests/cli_tests.sh. Prints one line per program and the closing
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
if [ -f tests/cli_tests.sh ]; then
    if BUILD="${BUILD:-build}" sh tests/cli_tests.sh > "${BUILD:-build}/cli_tests.log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS cli_tests ($(grep -c '^ok ' "${BUILD:-build}/cli_tests.log") checks)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names cli_tests"
        echo "FAIL cli_tests — last lines of ${BUILD:-build}/cli_tests.log:"
        tail -n 20 "${BUILD:-build}/cli_tests.log" | sed 's/^/    /'
    fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failed:$failed_names"; exit 1; }
