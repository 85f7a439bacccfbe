#!/usr/bin/env bash
# tests/pristine/rehearse.sh [MAKE-GOAL...] — the README's promise on a brand-new machine.
#
# Makes a pristine Debian 12 (bookworm) root with `debootstrap --variant=minbase`, installs
# only `make` in it (what the README asks a user to have), copies this checkout's tracked
# files in, and runs `make GOAL...` there (default: `make test`) as a user would: root, a
# clean environment, stock Debian's /etc/hosts (localhost is ::1 too) and node 18 from
# Debian. The run must end with "tests: N passed, 0 failed".
#
# The root behaves like a real machine for the sandbox: it is bind-mounted onto itself (so
# "/" is a mount point for pivot_root) and gets /proc, /sys with its cgroup sub-mounts, /dev,
# /dev/pts and /dev/shm. A chroot shares the host's network and PID space, so nothing else
# may use the test ports meanwhile; the rehearsal takes /tmp/ml-e2e.lock for its run.
#
# ML_PRISTINE_DIR    work folder (default build/pristine): the debootstrap tarball is cached
#                    there (bookworm-minbase.tgz); root/ is made anew on every run
# ML_PRISTINE_KEEP=1 leave root/ in place afterwards (for a look inside)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${ML_PRISTINE_DIR:-$repo/build/pristine}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
root=$dir/root
tarball=$dir/bookworm-minbase.tgz
goals=("$@")
((${#goals[@]})) || goals=(test)

say() { printf 'pristine: %s\n' "$*"; }
die() { printf 'pristine: error: %s\n' "$*" >&2; exit 1; }

((EUID == 0)) || die "must run as root (debootstrap, chroot, mounts)"

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# Processes whose root is the chroot (leftovers of the run, e.g. epmd) keep mounts busy.
kill_inside() {
    local p link
    for p in /proc/[0-9]*; do
        link=$(readlink "$p/root" 2>/dev/null) || continue
        [[ $link == "$root" || $link == "$root"/* ]] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    return 0
}

# Unmounts everything under the root, deepest first; true when nothing is left mounted.
unmount_all() {
    local m
    kill_inside
    sleep 0.2
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    ! awk -v r="$root" '$5 == r || index($5, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

cleanup() {
    unmount_all || say "warning: something under $root is still mounted; left in place"
    if [[ ${ML_PRISTINE_KEEP:-0} != 1 ]] && unmount_all; then
        # --one-file-system: never follow a mount that somehow survived into the host's /sys or /dev
        rm -rf --one-file-system "$root"
    fi
}

make_root() {
    [[ -d $root ]] && { unmount_all || die "old $root is still mounted"; rm -rf --one-file-system "$root"; }
    if [[ ! -s $tarball ]]; then
        say "downloading a minbase bookworm (cached in $tarball)"
        debootstrap --variant=minbase --make-tarball="$tarball.tmp" bookworm "$dir/tarball-work" >"$dir/debootstrap.log" 2>&1 ||
            { tail -20 "$dir/debootstrap.log"; die "debootstrap --make-tarball failed"; }
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir/tarball-work"
    fi
    say "unpacking a pristine root in $root"
    debootstrap --variant=minbase --unpack-tarball="$tarball" bookworm "$root" >"$dir/debootstrap.log" 2>&1 ||
        { tail -20 "$dir/debootstrap.log"; die "debootstrap failed"; }
}

# What a stock Debian 12 machine has that a minbase chroot lacks: its hosts file, a resolver,
# the updates and security suites. Plus what every machine of this workplace has: the CA of
# its egress proxy (taken into the system bundle when ca-certificates is installed) and the
# npmrc that points npm at that bundle.
configure_root() {
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    [[ -f /etc/npmrc ]] && cp /etc/npmrc "$root/etc/npmrc"
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
        >"$root/etc/hosts"
    echo pristine >"$root/etc/hostname"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
}

mount_root() {
    mount --bind "$root" "$root"
    mount --make-private "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --make-rslave "$root/sys"
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
}

copy_checkout() {
    say "copying the checkout's tracked files to /root/minilambda"
    mkdir -p "$root/root/minilambda"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$root/root/minilambda" -xf -
}

in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

ensure_debootstrap
trap cleanup EXIT
make_root
configure_root
mount_root
copy_checkout
say "apt-get install make (the only thing the README assumes)"
in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make >/dev/null'
log=$dir/make.log
say "make ${goals[*]} (log: $log)"
start=$SECONDS
exec 9>/tmp/ml-e2e.lock
flock 9
set +e
in_root sh -c 'cd /root/minilambda && make "$@"' make "${goals[@]}" >"$log" 2>&1 9>&-
rc=$?
if ((rc == 0)) && [[ " ${goals[*]} " == *" run "* ]]; then
    # `make run` returned: the gateway must answer, and `make stop` must end it all
    curl -sf --max-time 5 http://127.0.0.1:8080/health >>"$log" 2>&1 || { echo "gateway /health failed" >>"$log"; rc=1; }
    in_root sh -c 'cd /root/minilambda && make stop' >>"$log" 2>&1 9>&- || rc=1
fi
set -e
flock -u 9
tail -25 "$log"
say "make ${goals[*]} exited $rc after $((SECONDS - start)) s"
((rc == 0)) || exit "$rc"
if [[ " ${goals[*]} " == *" test "* ]]; then
    grep -Eq '^tests: [1-9][0-9]* passed, 0 failed$' "$log" || die "no 'tests: N passed, 0 failed' line"
fi
echo "ok - make ${goals[*]} on a pristine Debian 12 root"
