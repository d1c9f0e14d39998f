#!/usr/bin/env bash
# Stands in for nft in fault tests, in front of the real binary ($REAL_NFT).
# The fault is chosen by the first word of the file $NFT_FAULT_FILE:
#   fail-batch  every transaction gets one more operation the kernel rejects
#               (an element for a map that does not exist), appended at the
#               end, so the kernel has processed the others when it fails
#   no-nat      `nft -c` (addrmap's start-up check) fails the way a kernel
#               without nf_tables NAT answers
#   anything else, or no file: pass through
set -u
fault=$(head -c 64 "${NFT_FAULT_FILE:-/nonexistent}" 2>/dev/null | awk '{print $1}')
case "$fault" in
fail-batch)
  last="${!#}"
  if [[ "$last" == '{"nftables":'* && "$last" != *'"list"'* ]]; then
    bad='{"add":{"element":{"family":"inet","table":"addrmap","name":"no_such_map","elem":[["fdaa::1","fdaa::2"]]}}}'
    set -- "${@:1:$#-1}" "${last%]\}},${bad}]}"
  fi
  ;;
no-nat)
  for a in "$@"; do
    if [ "$a" = "-c" ]; then
      echo "Error: Could not process rule: No such file or directory" >&2
      echo 'add chain inet addrmap dnat_output { type nat hook output priority -100; policy accept; }' >&2
      exit 1
    fi
  done
  ;;
esac
exec "$REAL_NFT" "$@"
