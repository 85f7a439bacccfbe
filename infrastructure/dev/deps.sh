#!/usr/bin/env bash
# Installs what minilambda needs to build, test and run its native local stack on Debian 12.
# Idempotent and fast when everything is there: one dpkg-query, no apt-get update.
#   - Debian packages: only the missing ones, without recommends.
#   - nodejs + npm from Debian only when no `node` is on PATH (stock Debian 12 gives node 18);
#     npm alone when Debian's node is there without it (a node from elsewhere brings its own).
#   - npm dependencies of infrastructure/dev/s3 when node_modules is missing or stale.
# Installing postgresql/redis-server/rabbitmq-server must not leave system services running:
# a policy-rc.d that denies every start is in place during apt-get (ours is removed after).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/s3deps.sh
. "$SCRIPT_DIR/lib/s3deps.sh"

PACKAGES=(
	build-essential pkg-config
	libmicrohttpd-dev librabbitmq-dev libhiredis-dev libpq-dev libcurl4-openssl-dev
	libarchive-dev libcjson-dev libjwt-dev libssl-dev uuid-dev libseccomp-dev libcmocka-dev
	postgresql redis-server rabbitmq-server prometheus
	curl ca-certificates python3 zip unzip clang libclang-rt-14-dev
	# tests/integration/compose_check.py: validates docker-compose.yml offline, parses YAML
	docker-compose python3-yaml
	# tests and benchmarks: real AWS clients (CLI v2, boto3) for the Invoke API, load generators
	awscli python3-boto3 wrk hyperfine nginx-light
	# per-function network (docs/network.md): userspace NAT and the egress policy
	slirp4netns nftables
	# build-time dependency installs (docs/build-pipeline.md "Dependencies"): pip for python
	# functions' requirements.txt; npm comes with node (below)
	python3-pip
)
# node_from_debian: /usr/bin/node belongs to Debian's nodejs package (not a NodeSource or other
# build of the same name, which bundles its own npm and conflicts with Debian's).
node_from_debian() {
	local owner version
	owner=$(dpkg-query -S "$(readlink -f "$(command -v node)")" 2>/dev/null) || return 1
	[[ ${owner%%:*} == nodejs ]] || return 1
	version=$(dpkg-query -W -f='${Version}' nodejs 2>/dev/null) || return 1
	[[ $version != *nodesource* ]]
}
# npm installs package.json dependencies at build time: Debian's node ships without it.
if ! command -v node >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
elif node_from_debian; then
	PACKAGES+=(npm)
fi

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages"
	SUDO=(sudo)
fi

# missing_packages: names from PACKAGES that dpkg does not list as installed ("ii").
missing_packages() {
	local -A ok=()
	local name status
	while read -r name status; do
		[[ $status == ii ]] && ok[${name%%:*}]=1
	done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
	for name in "${PACKAGES[@]}"; do
		[[ -n ${ok[$name]:-} ]] || printf '%s\n' "$name"
	done
}

POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
remove_policy() { ((OWN_POLICY)) && "${SUDO[@]}" rm -f "$POLICY"; return 0; }

# deny_service_starts: Debian's maintainer scripts start postgres/redis/rabbitmq system-wide
# through invoke-rc.d/deb-systemd-invoke, both of which obey policy-rc.d (101 = forbidden).
deny_service_starts() {
	[[ -e $POLICY ]] && return 0 # an existing policy (e.g. in containers) is left as it is
	printf '#!/bin/sh\n# temporary, from minilambda deps.sh\nexit 101\n' |
		"${SUDO[@]}" tee "$POLICY" >/dev/null
	"${SUDO[@]}" chmod 755 "$POLICY"
	OWN_POLICY=1
	trap remove_policy EXIT
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages)
	((${#missing[@]} == 0)) && return 0
	say "installing ${missing[*]}"
	deny_service_starts
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
	remove_policy
	OWN_POLICY=0
	mapfile -t missing < <(missing_packages)
	((${#missing[@]} == 0)) || die "still missing after apt-get: ${missing[*]}"
}

install_packages
command -v node >/dev/null 2>&1 || die "node is still not on PATH"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH (node $(node --version) is not Debian's: install its npm)"
s3deps_ensure "$SCRIPT_DIR/s3" || die "npm install in $SCRIPT_DIR/s3 failed"
say "ok ($(node --version), ${#PACKAGES[@]} packages present)"
