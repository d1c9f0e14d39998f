#!/usr/bin/env bash
# Installs what the benchmark suite needs, when missing: what addrmap itself
# needs plus the benchmark's own tools (see test/host-setup.sh, "bench").
set -euo pipefail
exec bash "$(cd "$(dirname "$0")" && pwd)/../host-setup.sh" bench
