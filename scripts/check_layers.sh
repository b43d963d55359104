#!/bin/sh
# check_layers.sh — the library's layering, checked from the include lines alone.
#
# src/ is split into folders that form layers; a file may include headers of its own folder and
# of the folders below it, never above (docs/architecture.md draws the picture):
#
#   util < format < kernels < text < model < sparse < tools < server
#
# Also fails on an include cycle between source units of one folder (a.c's header including
# b's, and b's including a's) and on any source file longer than MAX_LINES (default 800).
# Prints one "not ok" line per finding and "ok" lines for the checks; exit 1 on any finding.
cd "$(dirname "$0")/.." || exit 2
MAX_LINES=${MAX_LINES:-800}
order="util format kernels text model sparse tools server"
rank() { i=0; for l in $order; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }

bad=0
for f in $(find src -name '*.[ch]' | sort); do
    dir=$(echo "$f" | cut -d/ -f2)
    r=$(rank "$dir")
    if [ "$r" -lt 0 ]; then echo "not ok layers: $f is in src/$dir, which is not a known layer ($order)"; bad=1; continue; fi
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        case "$inc" in
            skipllama.h) continue ;;
            */*) idir=${inc%%/*} ;;
            *) echo "not ok layers: $f includes \"$inc\" without its folder (write \"layer/$inc\")"; bad=1; continue ;;
        esac
        ir=$(rank "$idir")
        if [ "$ir" -lt 0 ]; then echo "not ok layers: $f includes \"$inc\" from an unknown folder"; bad=1
        elif [ "$ir" -gt "$r" ]; then echo "not ok layers: $f (src/$dir) includes \"$inc\", a layer above it"; bad=1
        fi
    done
done
[ $bad = 0 ] && echo "ok layers: every include in src/ points to its own layer or one below ($order)"

# cycles between headers: a header including (directly or not) itself
cyc=0
for h in $(find src -name '*.h' | sort); do
    seen=" "
    todo=${h#src/}
    while [ -n "$todo" ]; do
        set -- $todo; cur=$1; shift; todo="$*"
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "src/$cur" 2>/dev/null); do
            [ "$inc" = skipllama.h ] && continue
            if [ "$inc" = "${h#src/}" ]; then echo "not ok cycle: $h includes itself through $cur"; cyc=1; fi
            case "$seen" in *" $inc "*) ;; *) seen="$seen$inc "; todo="$todo $inc" ;; esac
        done
    done
done
[ $cyc = 0 ] && echo "ok cycles: no header includes itself through others"

long=0
for f in $(find src cli include -name '*.[ch]' | sort); do
    n=$(wc -l < "$f")
    if [ "$n" -gt "$MAX_LINES" ]; then echo "not ok size: $f has $n lines (limit $MAX_LINES)"; long=1; fi
done
[ $long = 0 ] && echo "ok size: every source file in src/, cli/ and include/ has at most $MAX_LINES lines"
[ $bad = 0 ] && [ $cyc = 0 ] && [ $long = 0 ]
