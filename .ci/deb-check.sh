#!/usr/bin/env bash
# Builds lanehub's Debian package, installs it on this machine, checks what it installed, then
# purges it and checks that it is gone. Needs root on a Debian/Ubuntu machine; installs the tools
# it needs (cargo-deb, dpkg-dev, systemd, udev) when they are missing. Stops at the first failed
# check with a message saying what is wrong; the package is purged again whatever happens (set
# LANEHUB_DEB_CHECK_KEEP=1 to keep it installed after a failure, for a look).
#
# Usage: .ci/deb-check.sh [PATH.deb]   (without a path it runs `cargo deb`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

PKG=lanehub
CONF=/etc/lanehub/lanehub.toml
DEFAULTS=/etc/default/lanehub
DATA=/var/lib/lanehub
UNIT=/usr/lib/systemd/system/lanehub.service
RULES=/usr/lib/udev/rules.d/60-lanehub-scanners.rules
PROBE=/usr/lib/lanehub/hid-pos-probe
# Lower is better; 10 is an unprotected root service. Ours has the hardening of lanehub.service.
MAX_EXPOSURE=2.0

passed=0
# Checks that fail without stopping the run (nothing later depends on them).
failed=0
installed_by_us=0
work=$(mktemp -d)

step() { echo "== deb-check: $*"; }
ok() { passed=$((passed + 1)); echo "   ok: $*"; }
fail() {
    echo "deb-check: FAIL: $*" >&2
    echo "deb-check: $passed passed, $((failed + 1)) failed" >&2
    exit 1
}
soft_fail() { failed=$((failed + 1)); echo "deb-check: FAIL (continuing): $*" >&2; }

cleanup() {
    local rc=$?
    if [ "$installed_by_us" = 1 ] && dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
        if [ "$rc" != 0 ] && [ "${LANEHUB_DEB_CHECK_KEEP:-}" = 1 ]; then
            echo "deb-check: leaving $PKG installed for a look (LANEHUB_DEB_CHECK_KEEP=1); remove it with: dpkg --purge $PKG" >&2
        else
            echo "deb-check: purging $PKG after the failure" >&2
            dpkg --purge "$PKG" >/dev/null 2>&1 || echo "deb-check: could not purge $PKG: run dpkg --purge $PKG" >&2
        fi
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# owner:group mode of a path, e.g. "root:lanehub 640".
perms() { stat -c '%U:%G %a' "$1"; }

expect_perms() {
    local path=$1 want=$2 got
    [ -e "$path" ] || fail "$path is missing"
    got=$(perms "$path")
    [ "$got" = "$want" ] || fail "$path is $got, expected $want"
    ok "$path is $want"
}

step "prerequisites"
[ "$(id -u)" = 0 ] || fail "must run as root (it installs and purges the package)"
command -v dpkg >/dev/null || fail "not a Debian/Ubuntu machine: dpkg is missing"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
    fail "$PKG is already installed here; this check installs and purges it, so remove it first (dpkg --purge $PKG)"
fi
missing=()
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v udevadm >/dev/null || missing+=(udev)
command -v adduser >/dev/null || missing+=(adduser)
if [ ${#missing[@]} -gt 0 ]; then
    echo "   installing ${missing[*]}"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "cannot install ${missing[*]} with apt-get"
fi
ok "dpkg-dev, systemd-analyze, udevadm and adduser are present"

deb=${1:-}
if [ -z "$deb" ]; then
    step "build the package (cargo deb)"
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "   installing cargo-deb"
        cargo install cargo-deb --locked --quiet || fail "cargo install cargo-deb failed"
    fi
    cargo deb --locked --output "$work/" >"$work/cargo-deb.log" 2>&1 \
        || { cat "$work/cargo-deb.log" >&2; fail "cargo deb failed (output above)"; }
    deb=$(ls "$work"/*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || { cat "$work/cargo-deb.log" >&2; fail "cargo deb wrote no .deb into $work"; }
fi
[ -f "$deb" ] || fail "$deb does not exist"
ok "package $(basename "$deb")"

step "package contents"
version=$(dpkg-deb -f "$deb" Version)
[ "$(dpkg-deb -f "$deb" Package)" = "$PKG" ] || fail "the package is not named $PKG"
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "Depends lacks adduser (the postinst uses it)"
dpkg-deb -f "$deb" Depends | grep -q ca-certificates || fail "Depends lacks ca-certificates (HTTPS to Vipps needs the CA store)"
dpkg-deb -e "$deb" "$work/control"
for f in "$CONF" "$DEFAULTS"; do
    grep -qx "$f" "$work/control/conffiles" || fail "$f is not a conffile (control/conffiles: $(tr '\n' ' ' <"$work/control/conffiles"))"
done
ok "$CONF and $DEFAULTS are conffiles"
for s in postinst prerm postrm; do
    [ -x "$work/control/$s" ] || fail "the package has no executable $s"
    grep -q '#DEBHELPER#' "$work/control/$s" && fail "$s still contains the #DEBHELPER# marker"
    sh -n "$work/control/$s" || fail "$s is not valid sh"
done
grep -q 'deb-systemd-helper enable' "$work/control/postinst" || fail "postinst does not enable the unit"
grep -q 'deb-systemd-invoke stop' "$work/control/prerm" || fail "prerm does not stop the unit"
ok "maintainer scripts are complete and enable, start and stop lanehub.service"
dpkg-deb -c "$deb" >"$work/contents"
for entry in "-rwxr-xr-x (root/root|0/0) .* ./usr/bin/lanehub$" \
    "-rw-r--r-- (root/root|0/0) .* ./etc/lanehub/lanehub.toml$" \
    "-rw------- (root/root|0/0) .* ./etc/default/lanehub$" \
    "-rw-r--r-- (root/root|0/0) .* .$UNIT$" \
    "-rw-r--r-- (root/root|0/0) .* .$RULES$" \
    "-rwxr-xr-x (root/root|0/0) .* .$PROBE$" \
    "-rw-r--r-- (root/root|0/0) .* ./usr/share/doc/lanehub/operations.md$"; do
    grep -Eq -- "^$entry" "$work/contents" || fail "no file matching '$entry' in the package"
done
ok "files and modes in the package"

step "install (dpkg -i)"
installed_by_us=1
dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log" >&2; fail "dpkg -i failed (output above)"; }
[ "$(dpkg-query -W -f='${Status}' "$PKG")" = "install ok installed" ] || fail "dpkg does not report $PKG as installed"
ok "$PKG $version installed"

step "installed files, user and permissions"
[ -x /usr/bin/lanehub ] || fail "/usr/bin/lanehub is missing or not executable"
lanehub --version | grep -q "${version%%-*}" || fail "lanehub --version ($(lanehub --version)) does not match the package version $version"
ok "/usr/bin/lanehub runs: $(lanehub --version)"
getent group "$PKG" >/dev/null || fail "group $PKG was not created"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd "$PKG") || fail "user $PKG was not created"
[ "$uid" -lt 1000 ] || fail "user $PKG has uid $uid, not a system uid (< 1000)"
[ "$gid" = "$(getent group "$PKG" | cut -d: -f3)" ] || fail "user $PKG's primary group is not $PKG"
[ "$home" = "$DATA" ] || fail "user $PKG's home is $home, expected $DATA"
case "$shell" in */nologin | /bin/false) ;; *) fail "user $PKG has the login shell $shell" ;; esac
ok "system user and group $PKG (uid $uid, home $home, shell $shell)"
expect_perms "$DATA" "lanehub:lanehub 750"
expect_perms "$CONF" "root:lanehub 640"
dpkg-statoverride --list "$CONF" >/dev/null || fail "no dpkg-statoverride for $CONF"
expect_perms "$DEFAULTS" "root:root 600"
expect_perms "$UNIT" "root:root 644"
expect_perms "$RULES" "root:root 644"
expect_perms "$PROBE" "root:root 755"
[ -L /etc/systemd/system/multi-user.target.wants/lanehub.service ] || fail "lanehub.service is not enabled (no symlink in multi-user.target.wants)"
ok "lanehub.service is enabled"

step "configuration (lanehub check-config)"
# As the service runs: the secrets file read by root, lanehub as its own user (which proves that
# user can read the configuration).
run_as_lanehub() {
    runuser -u "$PKG" -- env -i PATH=/usr/bin:/bin "$@"
}
out=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    sh -c "set -a; . $DEFAULTS; exec runuser -u $PKG -- lanehub check-config $CONF" 2>&1) \
    || fail "lanehub check-config $CONF failed as user $PKG: $out"
ok "$out"
grep -Eq '^data_dir = "/var/lib/lanehub"' "$CONF" || fail "$CONF does not set store.data_dir = \"/var/lib/lanehub\""
grep -Eq '^listen = "127\.0\.0\.1:' "$CONF" || fail "$CONF does not listen on loopback by default"
ok "$CONF keeps data in $DATA and listens on loopback"
# The shipped configuration must not go live with its demo tokens.
set +e
out=$(run_as_lanehub env LANEHUB__VIPPS__MODE=remote lanehub check-config "$CONF" 2>&1)
rc=$?
set -e
[ "$rc" = 2 ] && grep -q 'demo tokens are refused' <<<"$out" \
    || fail "remote mode with the shipped demo tokens was not refused (exit $rc): $out"
ok "remote mode with the shipped demo tokens is refused"
tok() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }
out=$(run_as_lanehub env LANEHUB__VIPPS__MODE=remote LANEHUB__API__ADMIN_TOKEN="$(tok)" \
    LANEHUB__LANES__0__TOKEN="$(tok)" LANEHUB__LANES__1__TOKEN="$(tok)" \
    lanehub check-config "$CONF" 2>&1) || fail "remote mode with real tokens from the environment was refused: $out"
ok "remote mode with tokens from LANEHUB__… variables passes"

step "run as the service does (user lanehub, packaged configuration)"
# systemd is not necessarily PID 1 here, so lanehub runs directly under the service's user, on
# ephemeral ports so that it cannot collide with anything else on this machine.
# lanehub.service is Type=notify: stand in for systemd's notification socket, to see READY=1.
notify_pid=""
chmod 0711 "$work"
install -d -m 0755 "$work/notify"
if command -v python3 >/dev/null; then
    python3 - "$work/notify/sock" >"$work/notify.log" 2>&1 <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(90)
try:
    while True:
        message = s.recv(4096).decode(errors="replace")
        print(message.replace("\n", " ").strip(), flush=True)
        if "READY=1" in message.split("\n"):
            break
except socket.timeout:
    pass
EOF
    notify_pid=$!
    for _ in $(seq 1 50); do [ -S "$work/notify/sock" ] && break; sleep 0.1; done
fi
(cd "$DATA" && exec setpriv --reuid="$PKG" --regid="$PKG" --init-groups --inh-caps=-all \
    env -i PATH=/usr/bin:/bin NO_COLOR=1 LANEHUB__API__LISTEN=127.0.0.1:0 LANEHUB__SIM__LISTEN=127.0.0.1:0 \
    NOTIFY_SOCKET="$work/notify/sock" lanehub run --config "$CONF") >"$work/run.out" 2>"$work/run.err" </dev/null &
pid=$!
for _ in $(seq 1 150); do
    grep -q '^lanehub listening on ' "$work/run.out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
addr=$(sed -n 's|^lanehub listening on http://\(.*\)$|\1|p' "$work/run.out")
if [ -z "$addr" ]; then
    kill "$pid" 2>/dev/null || true
    fail "lanehub run did not report where it listens within 30 s: $(cat "$work/run.out" "$work/run.err")"
fi
# GET PATH on lanehub without curl: prints the whole HTTP response.
http_get() {
    (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" &&
        printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$addr" >&3 &&
        timeout 10 cat <&3) 2>/dev/null || true
}
stop_and_fail() { kill "$pid" 2>/dev/null || true; fail "$@"; }
health=$(http_get /healthz)
grep -q '"status":"ok"' <<<"$health" || stop_and_fail "GET /healthz on $addr did not answer ok: $health"
ok "lanehub runs as user $PKG with $CONF and answers /healthz on $addr"
ready=""
for _ in $(seq 1 60); do
    ready=$(http_get /readyz)
    head -n1 <<<"$ready" | grep -q ' 200 ' && break
    sleep 0.5
done
head -n1 <<<"$ready" | grep -q ' 200 ' || stop_and_fail "GET /readyz did not answer 200 within 30 s: $ready"
ok "/readyz answers 200: lanes up and the (simulated) Vipps reachable"
if [ -n "$notify_pid" ]; then
    for _ in $(seq 1 50); do grep -Eq '(^| )READY=1( |$)' "$work/notify.log" && break; sleep 0.2; done
    if grep -Eq '(^| )READY=1( |$)' "$work/notify.log"; then
        ok "lanehub told systemd it is ready (sd_notify READY=1), as Type=notify needs"
    else
        soft_fail "lanehub never sent READY=1 to NOTIFY_SOCKET (got: $(tr '\n' ' ' <"$work/notify.log")); lanehub.service is Type=notify, so systemd would kill it after TimeoutStartSec"
    fi
    kill "$notify_pid" 2>/dev/null || true
    wait "$notify_pid" 2>/dev/null || true
else
    echo "   skipped: no python3 to stand in for systemd's notification socket"
fi
files=$(find "$DATA" -mindepth 1 | wc -l)
strangers=$(find "$DATA" -mindepth 1 ! -user "$PKG")
[ "$files" -gt 0 ] && [ -z "$strangers" ] || stop_and_fail "lanehub wrote nothing into $DATA, or files there are not $PKG's: $strangers"
ok "lanehub keeps its data in $DATA ($files files, all owned by $PKG)"
install -d -o "$PKG" -g "$PKG" -m 0750 "$work/backups"
out=$(runuser -u "$PKG" -- env -i PATH=/usr/bin:/bin lanehub backup --config "$CONF" "$work/backups/" 2>&1) \
    || stop_and_fail "lanehub backup as user $PKG failed while lanehub runs: $out"
ls "$work"/backups/lanehub-*.db >/dev/null 2>&1 || stop_and_fail "lanehub backup wrote no lanehub-*.db: $out"
ok "$out"
# lanehub.service gives SIGTERM 40 s (TimeoutStopSec) before SIGKILL.
kill -TERM "$pid"
stopped=""
for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || { stopped=yes; break; }
    sleep 0.2
done
[ -n "$stopped" ] || { kill -KILL "$pid" 2>/dev/null || true; fail "lanehub did not stop within 40 s of SIGTERM"; }
rc=0
wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "lanehub exited with status $rc on SIGTERM, expected 0: $(tail -n 5 "$work/run.err")"
ok "lanehub stops with status 0 on SIGTERM, within the unit's 40 s"

step "systemd unit (systemd-analyze)"
out=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify $UNIT failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify $UNIT complained: $out"
ok "systemd-analyze verify: no complaints"
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    exposure=$(systemd-analyze security --offline=yes --no-pager "$UNIT" 2>/dev/null \
        | sed -n 's/.*Overall exposure level for lanehub.service: \([0-9.]*\).*/\1/p')
    [ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level for $UNIT"
    awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' \
        || fail "lanehub.service exposure $exposure is above $MAX_EXPOSURE: hardening was lost"
    ok "systemd-analyze security: exposure $exposure (at most $MAX_EXPOSURE)"
fi

step "udev rule"
if udevadm verify --help >/dev/null 2>&1; then
    out=$(udevadm verify "$RULES" 2>&1) || fail "udevadm verify $RULES: $out"
    ok "udevadm verify: $RULES parses"
else
    # udev before 254 has no `verify`. `udevadm test` loads every rules file and logs each line it
    # cannot parse as "FILE:LINE message"; the device it runs on does not matter.
    dev=/sys/class/net/lo
    [ -e "$dev" ] || dev=$(ls -d /sys/class/*/* 2>/dev/null | head -n1)
    out=$(udevadm test "$dev" 2>&1) || fail "udevadm test $dev failed: $out"
    grep -q "Reading rules file: $RULES" <<<"$out" || fail "udevadm did not read $RULES"
    if grep "^$RULES:" <<<"$out" >"$work/udev-errors"; then
        fail "udev cannot parse $RULES: $(cat "$work/udev-errors")"
    fi
    ok "udevadm test read $RULES without a complaint (this udev has no 'verify')"
fi
# The helper against report descriptors in a sysfs-like tree: hidrawN/device/report_descriptor.
descriptor() { mkdir -p "$work/sys/$1/device" && printf "$2" >"$work/sys/$1/device/report_descriptor"; }
descriptor pos '\x05\x8c\x09\x02\xa1\x01\x09\x12\xa1\x02\x85\x02\x15\x00\x26\xff\x00\x75\x08\x95\x3f\x09\xfe\x82\x02\x01\xc0\xc0'
descriptor pos-long-page '\x06\x8c\x00\x09\x02\xa1\x01\xc0'
descriptor pos-extended-usage '\x0b\x02\x00\x8c\x00\xa1\x01\xc0'
descriptor keyboard '\x05\x01\x09\x06\xa1\x01\x05\x07\x19\xe0\x29\xe7\x15\x00\x25\x01\x75\x01\x95\x08\x81\x02\xc0'
descriptor keyboard-with-05-8c-as-data '\x05\x01\x09\x06\xa1\x01\x26\x05\x8c\x75\x10\x95\x01\x81\x02\xc0'
descriptor long-item-with-05-8c '\x05\x01\xfe\x02\x10\x05\x8c\x09\x06\xc0'
descriptor truncated '\x05'
mkdir -p "$work/sys/no-descriptor"
for d in pos pos-long-page pos-extended-usage; do
    [ "$("$PROBE" "$work/sys/$d")" = "LANEHUB_HID_POS=1" ] || fail "$PROBE does not recognise the HID POS descriptor '$d'"
done
for d in keyboard keyboard-with-05-8c-as-data long-item-with-05-8c truncated no-descriptor; do
    out=$("$PROBE" "$work/sys/$d") || fail "$PROBE exits non-zero on '$d'"
    [ -z "$out" ] || fail "$PROBE takes '$d' for a HID POS device: $out"
done
ok "hid-pos-probe: 3 HID POS descriptors found, 5 others rejected"

step "remove and reinstall keep configuration and data"
echo "# deb-check $$" >>"$CONF"
touch "$DATA/deb-check-marker"
dpkg -r "$PKG" >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log" >&2; fail "dpkg -r failed"; }
[ ! -e /usr/bin/lanehub ] || fail "dpkg -r left /usr/bin/lanehub"
[ ! -e "$RULES" ] || fail "dpkg -r left $RULES"
grep -q "deb-check $$" "$CONF" || fail "dpkg -r did not keep the edited $CONF"
[ -e "$DATA/deb-check-marker" ] || fail "dpkg -r did not keep $DATA"
ok "remove keeps $CONF and $DATA"
dpkg -i "$deb" >"$work/dpkg-i2.log" 2>&1 || { cat "$work/dpkg-i2.log" >&2; fail "reinstalling failed"; }
grep -q "deb-check $$" "$CONF" || fail "reinstalling replaced the edited $CONF"
[ -e "$DATA/deb-check-marker" ] || fail "reinstalling lost $DATA"
expect_perms "$CONF" "root:lanehub 640"
dpkg -i "$deb" >"$work/dpkg-i3.log" 2>&1 || { cat "$work/dpkg-i3.log" >&2; fail "installing over itself (an upgrade) failed"; }
grep -q "deb-check $$" "$CONF" || fail "an upgrade replaced the edited $CONF"
ok "reinstall and upgrade keep the edited $CONF and $DATA"

step "purge (dpkg --purge)"
dpkg --purge "$PKG" >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge failed (output above)"; }
installed_by_us=0
status=$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || true)
case "$status" in "" | *not-installed) ;; *) fail "dpkg still knows $PKG after purge: $status" ;; esac
for path in /usr/bin/lanehub "$CONF" /etc/lanehub "$DEFAULTS" "$DATA" "$UNIT" "$RULES" "$PROBE" \
    /etc/systemd/system/multi-user.target.wants/lanehub.service; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "purge left $path"
done
! dpkg-statoverride --list "$CONF" >/dev/null || fail "purge left the dpkg-statoverride for $CONF"
ok "purge removed the program, configuration, data, unit, udev rule and statoverride"
getent passwd "$PKG" >/dev/null && echo "   note: the system user $PKG stays after purge, by design (docs/operations.md, section 10)"

echo "deb-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
