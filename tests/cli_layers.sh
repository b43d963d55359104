#!/bin/sh
# cli_layers.sh — the source tree keeps its shape (docs/architecture.md): includes only point to
# the same layer or below, no header includes itself, no source file over 800 lines, and no
# circle between the library's compiled units (from the symbols in $BUILD/obj/src).
. tests/lib.sh
sh scripts/check_layers.sh "$B/obj/src"
