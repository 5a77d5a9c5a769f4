#!/usr/bin/env bash
# Builds the npm package's WebAssembly: wasm/pkg/node (for Node, CommonJS) and
# wasm/pkg/web (an ES module for browsers and bundlers), and wasm/pkg/testing
# (for the Node tests only). Run from anywhere:
#   bash wasm/build.sh [--bench-floor]
# --bench-floor also builds wasm/pkg/bench-floor, the module with the
# `bench-floor` feature (src/floor.rs) for `bench/side_by_side.mjs --floor`.
# Needs the wasm32-unknown-unknown target (installed here if absent) and the
# wasm-bindgen CLI at exactly the version of the wasm-bindgen crate (installed
# here with cargo if absent or different).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

# Keep in step with wasm/Cargo.toml's `wasm-bindgen = "=…"`.
WASM_BINDGEN_VERSION=0.2.108

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
wasm="$target_dir/wasm32-unknown-unknown/wasm/merkle_clock_wasm.wasm"

if [ "${1:-}" = "--bench-floor" ]; then
  # First, so that the package's own build below is the last to write $wasm.
  cargo build --profile wasm --target wasm32-unknown-unknown -p merkle-clock-wasm --features bench-floor
  rm -rf "$here/pkg/bench-floor"
  wasm-bindgen --target nodejs --weak-refs --out-dir "$here/pkg/bench-floor" "$wasm"
  echo '{"type": "commonjs"}' > "$here/pkg/bench-floor/package.json"
fi

# The `wasm` profile (Cargo.toml): release with fat LTO and one codegen unit.
cargo build --profile wasm --target wasm32-unknown-unknown -p merkle-clock-wasm

rm -rf "$here/pkg/node" "$here/pkg/web"
# --weak-refs: objects JS drops are freed by a FinalizationRegistry
# (calling .free() stays possible, and frees at once).
wasm-bindgen --target nodejs --weak-refs --out-dir "$here/pkg/node" "$wasm"
wasm-bindgen --target web --weak-refs --out-dir "$here/pkg/web" "$wasm"
# pkg/node is CommonJS inside a "type": "module" package: say so.
echo '{"type": "commonjs"}' > "$here/pkg/node/package.json"

# The Node tests' build: the same crate with the `testing` feature (the store
# contract suite against the JS blockstore adapter), in pkg/testing. A debug
# build (overflow checks on), which also keeps it apart from the release
# build: the two feature sets of one cdylib would otherwise replace each
# other in target/ and rebuild on every run.
cargo build --target wasm32-unknown-unknown -p merkle-clock-wasm --features testing
rm -rf "$here/pkg/testing"
wasm-bindgen --target nodejs --weak-refs --out-dir "$here/pkg/testing" \
  "$target_dir/wasm32-unknown-unknown/debug/merkle_clock_wasm.wasm"
echo '{"type": "commonjs"}' > "$here/pkg/testing/package.json"

ls -l "$here/pkg/node/"*.wasm "$here/pkg/web/"*.wasm
