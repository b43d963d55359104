#!/bin/sh
# deps.sh — installs what building and testing skipllama need, on Debian/Ubuntu, so that
# `make run` and `make test` work on a fresh machine with nothing but make and a C compiler.
#
#   scripts/deps.sh build     libraries the build links (checked with pkg-config); missing ones are
#                             installed with apt-get (as root, or through `sudo -n`), otherwise it
#                             stops (exit 1) printing the exact command to run.
#   scripts/deps.sh test      tools the tests use (numpy, valgrind, node/npm, tmux, chromium); best effort: what
#                             cannot be installed is left out and the tests that need it report
#                             SKIPPED. SKIPLLAMA_TEST_DEPS=full adds python3-torch (about 1 GB;
#                             .ci/run sets it), SKIPLLAMA_TEST_DEPS=none installs nothing.
#
# It is not a package manager: it only knows Debian's package names, and on other systems it says
# which libraries are missing and stops. Make calls it once per build folder (a stamp file).
set -u

# pkg-config module -> Debian package, one pair a line
BUILD_LIBS="libpcre2-8:libpcre2-dev jansson:libjansson-dev libmicrohttpd:libmicrohttpd-dev"
# (command or python module) -> Debian packages
TEST_TOOLS="py:numpy:python3-numpy
cmd:valgrind:valgrind
cmd:node:nodejs
cmd:npm:npm
py:pip:python3-pip
py:setuptools:python3-setuptools
py:wheel:python3-wheel
cmd:tmux:tmux
cmd:chromium:chromium"
TEST_TOOLS_FULL="py:torch:python3-torch"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

say() { echo "deps: $*" >&2; }

# How to run apt-get here: "" when we are root, "sudo -n" when sudo works without a password,
# or nothing usable (returns 1).
apt_prefix() {
    command -v apt-get > /dev/null 2>&1 || return 1
    if [ "$(id -u)" = 0 ]; then echo ""; return 0; fi
    if command -v sudo > /dev/null 2>&1 && sudo -n true > /dev/null 2>&1; then echo "sudo -n"; return 0; fi
    return 1
}

apt_updated=0
apt_install() {   # packages...
    pre=$(apt_prefix) || return 1
    if [ $apt_updated = 0 ]; then
        say "apt-get update"
        $pre env DEBIAN_FRONTEND=noninteractive apt-get update -q > /dev/null 2>&1 || say "apt-get update failed (continuing)"
        apt_updated=1
    fi
    say "installing: $*"
    $pre env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" > /tmp/skipllama-deps.$$.log 2>&1
    rc=$?
    [ $rc = 0 ] || tail -n 5 /tmp/skipllama-deps.$$.log >&2
    rm -f /tmp/skipllama-deps.$$.log
    return $rc
}

have_pc() { pkg-config --exists "$1" 2> /dev/null; }

need_build() {
    missing=""
    command -v pkg-config > /dev/null 2>&1 || missing="pkg-config"
    for pair in $BUILD_LIBS; do
        mod=${pair%%:*}; pkg=${pair#*:}
        have_pc "$mod" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    if apt_install $missing; then
        for pair in $BUILD_LIBS; do
            mod=${pair%%:*}
            have_pc "$mod" || { say "still missing after install: $mod"; return 1; }
        done
        return 0
    fi
    if command -v apt-get > /dev/null 2>&1; then
        say "missing build dependencies:$missing"
        say "run:  sudo apt-get install -y$missing   (then make again)"
    else
        say "missing build libraries (pkg-config names): $(echo "$BUILD_LIBS" | sed 's/:[^ ]*//g')"
        say "install them with your system's package manager, then make again"
    fi
    return 1
}

have_tool() {   # kind:name
    kind=${1%%:*}; name=${1#*:}
    case $kind in
        cmd) command -v "$name" > /dev/null 2>&1 ;;
        py)  "$PY" -c "import $name" > /dev/null 2>&1 ;;
    esac
}

need_test() {
    mode=${SKIPLLAMA_TEST_DEPS:-default}
    [ "$mode" = none ] && return 0
    list=$TEST_TOOLS
    [ "$mode" = full ] && list="$list
$TEST_TOOLS_FULL"
    missing=""
    for line in $list; do
        tool=${line%:*}; pkg=${line##*:}
        have_tool "$tool" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    if apt_prefix > /dev/null; then
        apt_install $missing || say "could not install:$missing — the tests that need them report SKIPPED"
    else
        say "not installing$missing (not root, no sudo): the tests that need them report SKIPPED"
    fi
    return 0
}

case "${1:-}" in
    build) need_build ;;
    test)  need_test ;;
    *) echo "usage: scripts/deps.sh build|test" >&2; exit 2 ;;
esac
