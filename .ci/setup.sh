#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine of this kind (Debian + Rust
# toolchain + Python 3): clang-19, libbpf and bpftool (the eBPF programs), the S3-protocol test
# server (moto), DuckDB (interop checks and the import benchmark), Chromium (the HTML
# report test), kubernetes-validate and checkov (the manifest tests). Idempotent: skips what is already there.
set -euo pipefail

# The eBPF programs are built with clang-19 against libbpf's headers; the layout test reads their
# BTF with bpftool (which also writes vmlinux.h at build); the capture tests build network
# namespaces with iproute2, ping, filter with nftables and run the recorder with setpriv.
need_apt=()
command -v clang-19 >/dev/null 2>&1 || need_apt+=(clang-19)
command -v llvm-strip-19 >/dev/null 2>&1 || need_apt+=(llvm-19)
[[ -e /usr/include/bpf/bpf_helpers.h ]] || need_apt+=(libbpf-dev)
command -v bpftool >/dev/null 2>&1 || need_apt+=(bpftool)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
# The Hubble TLS tests make their certificate authority and certificates with openssl.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The report test opens the HTML report in headless Chromium and screenshots it.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The image test builds the Containerfile's runtime stage with buildah (no Docker engine here).
command -v buildah >/dev/null 2>&1 || need_apt+=(buildah)
if ((${#need_apt[@]})); then
  echo "setup: apt-get install ${need_apt[*]}" >&2
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

need_pip=()
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
python3 -c 'import duckdb' >/dev/null 2>&1 || need_pip+=("duckdb")
# The manifest tests validate the rendered manifests against the Kubernetes API schemas and
# lint them for security.
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate")
command -v checkov >/dev/null 2>&1 || need_pip+=("checkov")
if ((${#need_pip[@]})); then
  echo "setup: pip install ${need_pip[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${need_pip[@]}"
  hash -r
fi
# kubectl renders the kustomize manifests (`kubectl kustomize`, no cluster needed); the machines
# of this kind carry it (Google Cloud SDK's package), which no registry here offers.
command -v kubectl >/dev/null 2>&1 || { echo "setup: kubectl is missing: the manifest tests render deploy/ with 'kubectl kustomize'" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is missing (a Rust toolchain is expected on this machine)" >&2; exit 1; }
