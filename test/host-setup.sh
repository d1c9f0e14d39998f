#!/usr/bin/env bash
# Installs the host tools addrmap's demo and kernel tests need, when missing:
# nftables (the nft binary), iproute2 (ip, network namespaces) and conntrack.
# Debian or Ubuntu, as root. Uses the machine's configured apt sources.
set -euo pipefail

need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "host-setup: missing ${need[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "host-setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${need[@]}" >&2
