#!/usr/bin/env bash
# addrmap demo, in throwaway network namespaces (nothing outside them changes):
# a guest talks to a database peer by a literal IPv6 address; the peer migrates
# and gets a new address; the guest's connection fails; the control plane
# pushes a mapping; addrmap (watching) installs DNAT; the same literal address
# works again. Run as root: npm run demo
set -euo pipefail
cd "$(dirname "$0")/.."

# The Node the project pins (the devDependency), for every process of the demo.
NODE=${NODE:-$PWD/node_modules/.bin/node}
[ -x "$NODE" ] || { echo "demo: $NODE is missing; run npm ci first" >&2; exit 1; }
G=addrmap-demo-guest
P=addrmap-demo-peer
DIR=$(mktemp -d /tmp/addrmap-demo.XXXXXX)
OLD=fdaa:0:18:a7b:7d:f066:b83b:2   # the peer's address before it migrated, written in the guest's config
NEW=fdaa:0:18:a7b:c2:f066:b83b:2   # its address now
AGENT_PID=
PEER_PID=

cleanup() {
  # By the pids the demo started: no process tools (procps) needed to find them.
  for pid in $AGENT_PID $PEER_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in $AGENT_PID $PEER_PID; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$G" 2>/dev/null || true
  ip netns del "$P" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cleanup_quiet() { ip netns del "$G" 2>/dev/null || true; ip netns del "$P" 2>/dev/null || true; }
cleanup_quiet

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
probe() { ip netns exec "$G" "$NODE" test/support/probe.mjs tcp "$1" 5432 1000; }

step "Building a guest and a peer (network namespaces joined by veth)"
ip netns add "$G"; ip netns add "$P"
ip -n "$G" link add eth0 type veth peer name eth0 netns "$P"
for ns in "$G" "$P"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
ip -n "$G" addr add fd00:1::1/64 dev eth0 nodad
ip -n "$P" addr add fd00:1::2/64 dev eth0 nodad
ip -n "$G" route add fdaa::/16 via fd00:1::2
ip -n "$P" addr add "$NEW/128" dev lo nodad
ip netns exec "$P" "$NODE" test/support/echo-server.mjs "database" 5432 >/dev/null &
PEER_PID=$!
sleep 0.5
echo "peer 'database' now lives at $NEW (it migrated away from $OLD)"

step "The guest's config still says $OLD: connecting fails"
probe "$OLD"

step "Starting 'addrmap watch' in the guest (feature flag on)"
cat > "$DIR/config.json" <<JSON
{ "enabled": true }
JSON
ip netns exec "$G" env ADDRMAP_CONFIG="$DIR/config.json" ADDRMAP_MAPPINGS="$DIR/mappings.json" \
  ADDRMAP_STATE_DIR="$DIR/state" "$NODE" dist/addrmap.mjs watch > "$DIR/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 50); do grep -q '"event":"watching"' "$DIR/agent.log" 2>/dev/null && break; sleep 0.1; done
echo "agent pid $AGENT_PID, watching $DIR/mappings.json"

step "The control plane pushes a mapping (write a temp file, fsync, rename)"
cat > "$DIR/mappings.json.tmp" <<JSON
{ "version": 1, "generation": 1, "mappings": [ { "from": "$OLD", "to": "$NEW" } ] }
JSON
sync "$DIR/mappings.json.tmp"
mv "$DIR/mappings.json.tmp" "$DIR/mappings.json"
cat "$DIR/mappings.json"
for _ in $(seq 50); do grep -q '"event":"applied"' "$DIR/agent.log" && break; sleep 0.05; done
grep '"event":"applied"' "$DIR/agent.log" | tail -1

step "The same literal address works again"
probe "$OLD"

step "What addrmap installed in the guest's kernel"
ip netns exec "$G" nft list table inet addrmap
routes=$(ip -n "$G" -6 route show proto 173)
echo "host routes added by addrmap: ${routes:-none (the stale address is routed like its new one)}"

step "addrmap status"
ip netns exec "$G" env ADDRMAP_STATE_DIR="$DIR/state" "$NODE" dist/addrmap.mjs status

step "A bad push is refused and changes nothing"
echo '{ "version": 1, "generation": 2, "mappings": [ { "from": "'"$OLD"'", "to": "not-an-address" } ] }' > "$DIR/mappings.json"
for _ in $(seq 50); do grep -q '"event":"refused"' "$DIR/agent.log" && break; sleep 0.05; done
grep '"event":"refused"' "$DIR/agent.log" | tail -1
probe "$OLD"

step "Done; removing the namespaces"
