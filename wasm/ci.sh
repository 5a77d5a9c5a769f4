#!/usr/bin/env bash
# The wasm package's CI steps, for .ci/run to call as `bash wasm/ci.sh`:
# the target and wasm-bindgen CLI (installed if absent), Chromium (installed
# if absent), the npm packages, the build, the Node tests, a replica on
# Helia's blockstore and a sync with `mclock serve` over js-libp2p
# (tests/helia, installed if absent), the browser test,
# and clippy for the wasm target. Runs from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> wasm: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "target wasm32-unknown-unknown"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

step "chromium (Debian's package, for the browser test)"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version

step "npm ci"
(cd wasm && npm ci --no-audit --no-fund --loglevel=error)

step "type check of js/*.d.ts (tsc --noEmit --strict on test/types/, no build needed)"
(cd wasm && npm run --silent test:types)

step "clippy for wasm32 (the core without redb, and the wasm crate)"
cargo clippy --target wasm32-unknown-unknown --no-default-features -p merkle-clock -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p merkle-clock-wasm --all-features -- -D warnings

step "build (wasm-bindgen CLI installed by build.sh if absent or another version)"
bash wasm/build.sh

step "node tests"
(cd wasm && npm test)

step "helia and js-libp2p (Node 22, tests/helia): a replica on Helia's blockstore fetched over Bitswap; a JS replica syncing with mclock serve over libp2p streams"
if [ ! -x tests/helia/node_modules/node/bin/node ] || [ ! -f tests/helia/node_modules/helia/package.json ]; then
  (cd tests/helia && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd tests/helia && node_modules/node/bin/node --test replica.test.mjs sync.test.mjs)

step "browser test (headless Chromium)"
(cd wasm && npm run test:browser)

step "wasm done"
