#!/usr/bin/env bash
# The README's test command: formatting, clippy with -D warnings, and every test —
# unit, property, replay, allocation, and the end-to-end tests in network namespaces.
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
