#!/usr/bin/env bash
# Packages both crates as `cargo publish` would (together: the proxy crate depends on the
# unpublished core), then runs every test the packages ship from the unpacked packages, so a
# test that reads files outside its package is caught before crates.io users meet it.
# By hand on a work tree with changes: ALLOW_DIRTY=1 scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo keeps crates it unpacked from the dry run's temporary registry under CARGO_HOME, by
# that registry's path: a second run from the same path would reuse a stale core crate of
# the same version. None of ours is on crates.io, so any such copy is stale.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rm -rf "$cargo_home"/registry/src/*/tower-balancer-[0-9]* "$cargo_home"/registry/cache/*/tower-balancer-[0-9]*

dirty=()
[ "${ALLOW_DIRTY:-0}" = 1 ] && dirty=(--allow-dirty)
cargo publish --dry-run "${dirty[@]}" -p tower-balancer -p tower-balancer-proxy
# the .crate files themselves (the dry run above already built them from the packages)
cargo package --no-verify "${dirty[@]}" -p tower-balancer -p tower-balancer-proxy

version="$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tower-balancer"))')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for crate in tower-balancer tower-balancer-proxy; do
  tar -xzf "target/package/$crate-$version.crate" -C "$work"
done
cat > "$work/Cargo.toml" <<TOML
[workspace]
resolver = "2"
members = ["tower-balancer-$version", "tower-balancer-proxy-$version"]

[patch.crates-io]
tower-balancer = { path = "tower-balancer-$version" }
TOML
# the same dependency versions as the workspace
cp Cargo.lock "$work/Cargo.lock"
(cd "$work" && CARGO_TARGET_DIR="$OLDPWD/target/package-test" cargo test --workspace --all-features)
echo "package check: both crates package, and their shipped tests pass from the packages"
