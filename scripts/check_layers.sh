#!/bin/sh
# check_layers.sh — the library's layering, checked from the include lines alone.
#
# src/ is split into folders that form layers; a file may include headers of its own folder and
# of the folders below it, never above (docs/architecture.md draws the picture):
#
#   util < format < kernels < text < model < sparse < tools < server
#
# Also fails on a header that includes itself through others, on any source file longer than
# MAX_LINES (default 800), and — given the folder of the library's object files
# (scripts/check_layers.sh build/obj/src) — on a dependency circle between compiled units: unit a
# calls (or reads) a symbol defined in b and b, directly or not, one defined in a. That is the
# check headers cannot make (tokenizer.h may declare what tokenizer_bpe.c defines).
# Prints one "not ok" line per finding and "ok" lines for the checks; exit 1 on any finding.
cd "$(dirname "$0")/.." || exit 2
MAX_LINES=${MAX_LINES:-800}
OBJDIR=${1:-}
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
# circles between compiled units, from the symbols each object defines and uses
circ=0
if [ -n "$OBJDIR" ]; then
    objdir=$OBJDIR
    if ! command -v nm > /dev/null 2>&1; then
        echo "not ok circles: nm (binutils) is missing"; circ=1
    elif [ -z "$(find "$objdir" -name '*.o' 2>/dev/null | head -n 1)" ]; then
        echo "not ok circles: no object files under $objdir (build first)"; circ=1
    else
        found=$(find "$objdir" -name '*.o' | sort | while read -r o; do
            u=${o#"$objdir"/}; u=${u%.o}
            nm "$o" | awk -v u="$u" '$1 == "U" { print u, "U", $2; next } NF == 3 && $2 ~ /^[TDBRC]$/ { print u, "D", $3 }'
        done | awk '
            $2 == "D" { def[$3] = $1; next }
            { use[++n] = $1; sym[n] = $3 }
            END {
                for (i = 1; i <= n; i++) {
                    d = def[sym[i]]
                    if (d != "" && d != use[i] && !((use[i], d) in e)) { e[use[i], d] = 1; adj[use[i]] = adj[use[i]] " " d; nodes[use[i]] = 1 }
                }
                for (s in nodes) {           # can s reach itself?
                    split("", seen); top = 0; stack[++top] = s
                    while (top > 0) {
                        v = stack[top--]; k = split(adj[v], nb, " ")
                        for (j = 1; j <= k; j++) {
                            w = nb[j]
                            if (w == s) { print s; top = 0; break }
                            if (!(w in seen)) { seen[w] = 1; stack[++top] = w }
                        }
                    }
                }
            }' | sort)
        if [ -n "$found" ]; then
            echo "not ok circles: these units reach themselves through calls into other units:" $found; circ=1
        else
            echo "ok circles: no compiled unit of the library depends on itself through others"
        fi
    fi
fi
[ $bad = 0 ] && [ $cyc = 0 ] && [ $long = 0 ] && [ $circ = 0 ]
