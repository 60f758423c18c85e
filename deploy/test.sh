#!/usr/bin/env bash
# Runs every check and test of the workspace: the README's test command.
# End-to-end tests (network namespaces) need root; under CI=1 a skipped one is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
