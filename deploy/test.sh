#!/usr/bin/env bash
# The README's test command: formatting, clippy with -D warnings, and every test —
# unit, property, replay, allocation, and the end-to-end tests in network namespaces (on
# every data-plane configuration).
# The end-to-end tests need root (they skip with a visible message otherwise; with CI
# set, a skip is a failure). As root, the lab's programs are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  deploy/install-lab-deps.sh
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
# The end-to-end suite again on the other data-plane configurations: the pnet backend,
# and the afpacket backend with two workers and the hosts' offloads switched off (the
# first run above: afpacket, one worker, offloads at their defaults).
echo "== end-to-end: io = pnet"
SEKISHO_E2E_IO=pnet cargo test --locked -p sekisho-e2e
echo "== end-to-end: io = afpacket, workers = 2, hosts' offloads off"
SEKISHO_E2E_WORKERS=2 SEKISHO_E2E_OFFLOADS=off cargo test --locked -p sekisho-e2e
