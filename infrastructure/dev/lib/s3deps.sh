# Sourced by deps.sh and stack.sh: keeps infrastructure/dev/s3/node_modules in step
# with package-lock.json. Not executable on its own.

# s3deps_stale DIR: true (0) when DIR/node_modules is missing or older than the manifests.
# npm writes node_modules/.package-lock.json on every install, so its mtime marks the last one.
s3deps_stale() {
	local dir=$1 stamp=$1/node_modules/.package-lock.json
	[[ ! -f $stamp ]] && return 0
	[[ $dir/package-lock.json -nt $stamp || $dir/package.json -nt $stamp ]] && return 0
	[[ -d $dir/node_modules/@20minutes/s3rver ]] || return 0
	return 1
}

# s3deps_ensure DIR: install DIR's npm dependencies when stale. Returns npm's status.
s3deps_ensure() {
	local dir=$1
	s3deps_stale "$dir" || return 0
	command -v npm >/dev/null 2>&1 || {
		echo "s3deps: npm not found (run infrastructure/dev/deps.sh)" >&2
		return 1
	}
	echo "s3deps: installing npm dependencies in $dir" >&2
	# EBADENGINE: s3rver 5 asks for node >= 24 but runs on 18 (polyfilled) and 20.
	if [[ -f $dir/package-lock.json ]]; then
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
	else
		(cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
	fi
}
