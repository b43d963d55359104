#!/bin/sh
# Runs each test program given as an argument (from the repository root, so tests find
# tests/data), then every tests/cli_*.sh script. Prints one line per program and the closing
# "N passed, N failed, N skipped" line; exits non-zero when anything failed.
#
# A program or script that cannot run here (a tool it needs is missing: numpy, valgrind, node...)
# exits with status 77 after printing "skipped: <reason>"; it is counted as skipped, never as
# passed. A program that passes but ran no check at all is counted as failed. A program that
# runs but has to leave a part out (e.g. the AVX-512 kernels on a CPU without AVX-512) prints
# "# SKIP <part>: <reason>" lines; they are listed under the closing line as "partly skipped".
passed=0
failed=0
skipped=0
failed_names=""
skipped_names=""
partial=""

# one_result NAME STATUS LOG
one_result() {
    name=$1 rc=$2 log=$3
    checks=$(grep -c '^ok ' "$log")
    if [ "$rc" -eq 77 ]; then
        skipped=$((skipped + 1))
        skipped_names="$skipped_names $name"
        echo "SKIP $name: $(grep -m1 -i 'skipped' "$log" | sed 's/^[^:]*skipped[^:]*: *//I')"
    elif [ "$rc" -eq 0 ] && [ "$checks" -gt 0 ]; then
        passed=$((passed + 1))
        parts=$(grep '^# SKIP ' "$log" | sed 's/^# SKIP //' | sort -u | tr '\n' ';' | sed 's/;$//; s/;/; /g')
        [ -n "$parts" ] && partial="$partial
  $name: $parts"
        nskip=$(grep -c '^ok .*# *skip' "$log")
        if [ "$nskip" -gt 0 ]; then echo "PASS $name ($checks checks, $nskip of them skipped)"; else echo "PASS $name ($checks checks)"; fi
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        if [ "$rc" -eq 0 ]; then echo "FAIL $name — it ran no check (no 'ok' line in $log)"
        else echo "FAIL $name — last lines of $log:"; fi
        tail -n 20 "$log" | sed 's/^/    /'
    fi
}

for t in "$@"; do
    "$t" > "${t}.log" 2>&1
    one_result "$(basename "$t")" $? "${t}.log"
done
# CLI-level test scripts: every tests/cli_*.sh, run with BUILD set
for script in tests/cli_*.sh; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .sh)
    log="${BUILD:-build}/$name.log"
    BUILD="${BUILD:-build}" sh "$script" > "$log" 2>&1
    one_result "$name" $? "$log"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$skipped" -eq 0 ] || echo "skipped:$skipped_names (each line above says which tool it needs)"
[ -z "$partial" ] || echo "partly skipped (these parts did not run here):$partial"
[ "$failed" -eq 0 ] || { echo "failed:$failed_names"; exit 1; }
