#!/bin/sh
# run.sh — run every fuzz harness (or the ones named) for SECONDS each, one after the other.
#
#   fuzz/run.sh SECONDS [HARNESS...]      e.g.  fuzz/run.sh 30   or   fuzz/run.sh 600 tokenize
#
# Needs `make fuzz` first; creates the seed corpora (fuzz/make_seeds.sh) when missing. Each
# harness works on its corpus $FUZZ_BUILD/corpus/<h> (default build-fuzz, grows as coverage is
# found), writes crashes / leaks / timeouts / OOMs to $FUZZ_BUILD/artifacts/<h>/ and its log to
# $FUZZ_BUILD/logs/<h>.log, and prints one line (also appended to $FUZZ_BUILD/logs/summary.txt):
# executions, seconds, coverage (cov = edges, ft = features) and the number of new artifacts. Exits 1 when any harness left an artifact:
# minimise it (see docs/fuzzing.md), commit it under tests/regress/<h>/ and fix the bug.
# Limits: -timeout=10 s per input, -rss_limit_mb=2048, inputs up to 64 KiB for GGUF files (512 KiB for
# models: the seeds with 256-element super-blocks are bigger than 64 KiB) and
# 4 KiB for text/ids/arguments. Extra libFuzzer flags can be passed in $FUZZ_FLAGS.
set -u
T=${1:?usage: fuzz/run.sh SECONDS [HARNESS...]}
shift
B=${FUZZ_BUILD:-build-fuzz}
ALL="gguf model profile tokenize detokenize cli_args safetensors hf server_request"
[ $# -gt 0 ] && ALL="$*"
[ -d "$B/corpus/gguf" ] || sh fuzz/make_seeds.sh > /dev/null || exit 1
mkdir -p "$B/logs"
status=0
for h in $ALL; do
    bin="$B/fuzz/fuzz_$h"
    [ -x "$bin" ] || { echo "run.sh: $bin missing: run 'make fuzz'" >&2; exit 2; }
    # absolute paths: fuzz_cli_args runs commands in a scratch directory
    art="$(pwd)/$B/artifacts/$h"
    mkdir -p "$B/corpus/$h" "$art"
    before=$(ls "$art" | wc -l)
    case $h in
        gguf) opts="-max_len=65536 -dict=fuzz/gguf.dict" ;;
        # the K-quant / IQ4_XS seeds need 256-wide rows: the smallest such model is 160-400 KB
        model) opts="-max_len=524288 -dict=fuzz/gguf.dict" ;;
        profile) opts="-max_len=32768 -dict=fuzz/gguf.dict" ;;
        cli_args) opts="-max_len=4096 -close_fd_mask=3" ;;
        safetensors) opts="-max_len=16384 -dict=fuzz/safetensors.dict" ;;
        hf) opts="-max_len=8192 -dict=fuzz/hf.dict" ;;
        server_request) opts="-max_len=4096 -dict=fuzz/json.dict" ;;
        *) opts="-max_len=4096" ;;
    esac
    log="$B/logs/$h.log"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" $opts -timeout=10 -rss_limit_mb=2048 -max_total_time="$T" -print_final_stats=1 \
        -artifact_prefix="$art/" ${FUZZ_FLAGS:-} "$(pwd)/$B/corpus/$h" > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
    new=$(( $(ls "$art" | wc -l) - before ))
    line=$(printf '%-11s %10s execs %6ss  cov %6s  ft %7s  corpus %-12s artifacts %d%s' "$h" "${execs:-?}" "$secs" "${cov:-?}" \
        "${ft:-?}" "${corp:-?}" "$new" "$( [ "$rc" -ne 0 ] && echo "  (exit $rc: see $log)")")
    echo "$line"
    echo "$(date '+%Y-%m-%d %H:%M') $line" >> "$B/logs/summary.txt"
    if [ "$new" -gt 0 ] || [ "$rc" -ne 0 ]; then status=1; fi
done
exit $status
