#!/usr/bin/env bash
# Lays out the runtime image's whole filesystem in ROOTFS from the binaries in BIN_DIR: the
# three binaries, exactly the shared libraries they link (and the dynamic loader), the CA
# certificates (HTTPS to S3, the Hubble TLS), /etc/passwd and /etc/group naming the
# non-root user 65532, and a /tmp. No shell, no package manager, nothing else.
#
# The Containerfile's build stage runs it; the image test runs it too, over the binaries it
# tests, so that what is checked is what ships.
#   usage: deploy/image/rootfs.sh BIN_DIR ROOTFS
set -euo pipefail
bin_dir=${1:?usage: rootfs.sh BIN_DIR ROOTFS}
rootfs=${2:?usage: rootfs.sh BIN_DIR ROOTFS}
binaries=(flowrec flowsql flowstore)

mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
for binary in "${binaries[@]}"; do
  [[ -x "$bin_dir/$binary" ]] || { echo "rootfs.sh: $bin_dir/$binary is missing: build it first" >&2; exit 1; }
  install -m 0755 "$bin_dir/$binary" "$rootfs/usr/local/bin/$binary"
done
# Every library the binaries link, at the path the loader looks for it, symlinks resolved.
for binary in "${binaries[@]}"; do
  ldd "$bin_dir/$binary" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}'
done | sort -u | while read -r library; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
