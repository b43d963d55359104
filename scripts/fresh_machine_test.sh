#!/bin/sh
# fresh_machine_test.sh — the newcomer's two commands on a fresh Debian 12 system with nothing
# but make and a C compiler: debootstraps a minimal bookworm into DIR (default /tmp/sl-fresh),
# installs make + gcc + libc6-dev there, clones this repository's HEAD into it and runs
# `make run` and `make test` as root inside the chroot (the build installs PCRE2 and the test
# tools itself through scripts/deps.sh), then `make run` as an ordinary user without sudo on a
# copy whose libpcre2-dev was removed (it must stop and print the command to run).
# Needs root, debootstrap (apt-get install debootstrap) and access to deb.debian.org.
# Not part of `make test` (it downloads ~300 MB and takes minutes).
set -eu
DIR=${1:-/tmp/sl-fresh}
REPO=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "fresh_machine_test: run as root"; exit 2; }
command -v debootstrap > /dev/null || { echo "fresh_machine_test: apt-get install debootstrap"; exit 2; }
[ -d "$DIR/usr" ] || debootstrap --variant=minbase bookworm "$DIR" http://deb.debian.org/debian > "$DIR.debootstrap.log" 2>&1
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
mount -t proc proc "$DIR/proc"; mount --rbind /dev "$DIR/dev"; mount -t sysfs sys "$DIR/sys"
trap 'umount -R "$DIR/dev" "$DIR/proc" "$DIR/sys" 2>/dev/null || true' EXIT
chroot "$DIR" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q > /dev/null && apt-get install -y -q --no-install-recommends make gcc libc6-dev > /dev/null'
rm -rf "$DIR/root/skipllama"; git clone -q "$REPO" "$DIR/root/skipllama"
echo "== as root: make run"; chroot "$DIR" /bin/sh -c 'cd /root/skipllama && make -j2 run 2>&1 | grep -v "^cc \|^ar "'
echo "== as root: make test"; chroot "$DIR" /bin/sh -c 'cd /root/skipllama && make -j2 test 2>&1 | grep -v "^cc \|^ar "'
echo "== as a user without sudo, PCRE2 removed: make run must stop with the command to run"
chroot "$DIR" /bin/sh -c 'apt-get remove -y -q libpcre2-dev > /dev/null 2>&1; id newbie > /dev/null 2>&1 || useradd -m newbie'
rm -rf "$DIR/home/newbie/s"; git clone -q "$REPO" "$DIR/home/newbie/s"
if chroot "$DIR" /bin/sh -c 'chown -R newbie /home/newbie/s; su newbie -c "cd ~/s && make run"' > "$DIR.user.log" 2>&1; then
    echo "not ok: make run succeeded without PCRE2"; exit 1
fi
grep -q "sudo apt-get install -y libpcre2-dev" "$DIR.user.log" && echo "ok: it stopped with: $(grep 'run:' "$DIR.user.log")"
