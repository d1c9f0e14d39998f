#!/usr/bin/env bash
# The hand-rolled alternative addrmap is measured against: what an operator
# would write to apply the mapping file with nftables. It loads the same
# table as addrmap (ruleset.nft beside this script), then on every rename
# into place (or close after writing) of the mapping file turns the whole
# file into one nft script (flush both maps, add every element, one per line;
# jq does the JSON) and loads it with `nft -f`, which the kernel commits as
# one transaction. It does no validation, no chain resolution, no host routes and
# no conntrack cleanup.
# Usage: baseline-watch.sh /path/to/mappings.json
# Prints "watching" once the watch is set up, then "applied GENERATION" (or
# "failed") after each file.
set -uo pipefail
file=$1
dir=$(dirname "$file")
name=$(basename "$file")
script=$(mktemp)
trap 'rm -f "$script"' EXIT

nft -f "$(dirname "$0")/ruleset.nft" || exit 1

apply() {
  jq -r '
    "# generation \(.generation)",
    "flush map inet addrmap dnat4",
    "flush map inet addrmap dnat6",
    ([.mappings[] | select(.from | contains(":") | not)] | select(length > 0) | "add element inet addrmap dnat4 {", (.[] | "\t\(.from) : \(.to),"), "}"),
    ([.mappings[] | select(.from | contains(":"))] | select(length > 0) | "add element inet addrmap dnat6 {", (.[] | "\t\(.from) : \(.to),"), "}")
  ' "$file" > "$script" || { echo failed; return; }
  nft -f "$script" || { echo failed; return; }
  read -r _ _ generation < "$script"
  echo "applied $generation"
}

# inotifywait says on stderr when its watch is in place; merged into one stream.
while read -r line; do
  case $line in
    "Watches established.") [ -e "$file" ] && apply; echo watching ;;
    "$name") apply ;;
  esac
done < <(inotifywait -m -e moved_to -e close_write --format '%f' "$dir" 2>&1)
