#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine of this kind (Debian + Rust
# toolchain + Python 3): the S3-protocol test server (moto) and DuckDB (interop checks and the
# import benchmark). Idempotent: skips what is already there.
set -euo pipefail

need_pip=()
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
python3 -c 'import duckdb' >/dev/null 2>&1 || need_pip+=("duckdb")
if ((${#need_pip[@]})); then
  echo "setup: pip install ${need_pip[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${need_pip[@]}"
  hash -r
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is missing (a Rust toolchain is expected on this machine)" >&2; exit 1; }
