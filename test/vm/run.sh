#!/usr/bin/env bash
# test/vm/run.sh SUITE [--mem MB] [--cpus N] [--timeout S] [--env NAME=VALUE]... -- CMD [ARGS...]
# Boots SUITE's Debian kernel (test/vm/kernel.sh) in QEMU with the host's own
# root as a throwaway writable overlay, runs CMD there as root in the current
# directory and exits with its status: 124 on timeout, 125 if the VM never
# reported one. stdout carries CMD's output (its stderr too: one console);
# stderr a one-line boot summary.
#
# ADDRMAP_VM_ARCH=arm64 boots Debian's arm64 kernel in qemu-system-aarch64
# instead; the host's root cannot serve then, so ADDRMAP_VM_ROOT names the
# directory to share as the guest's root (arm64 programs, with a /bin/sh).
# CMD then runs through /bin/sh, from /.
set -euo pipefail

usage() { echo "usage: run.sh SUITE [--mem MB] [--cpus N] [--timeout S] [--env NAME=VALUE]... -- CMD [ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
suite=$1
shift
mem=1024 cpus=2 timeout=1200 envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --mem) mem=${2:?}; shift 2 ;;
    --cpus) cpus=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --env)
      [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "run.sh: --env wants NAME=VALUE" >&2; exit 2; }
      envs+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ $# -gt 0 ] || usage

arch=${ADDRMAP_VM_ARCH:-amd64}
root=${ADDRMAP_VM_ROOT:-/}
root=${root%/}
[ -n "$root" ] || root=/
[ "$arch" = amd64 ] || [ "$root" != / ] || { echo "run.sh: ADDRMAP_VM_ARCH=$arch needs ADDRMAP_VM_ROOT (a root of $arch programs)" >&2; exit 2; }
dir=$(ADDRMAP_VM_ARCH=$arch bash "$(dirname "${BASH_SOURCE[0]}")/kernel.sh" "$suite")
ver=$(cat "$dir/version")
# The guest reads the job through its 9p view of the shared root, so the temp
# dir's path goes on the kernel command line: keep it free of spaces.
if [ "$root" = / ]; then
  tmp=$(TMPDIR=/tmp mktemp -d /tmp/addrmap-vm.XXXXXX)
  shell=/bin/bash modules=$dir/lib/modules workdir=$PWD
else
  mkdir -p "$root/var/tmp" "$root/lib/modules"
  tmp=$(mktemp -d "$root/var/tmp/addrmap-vm.XXXXXX")
  # The kernel's modules inside the shared root (hard links where the file system allows).
  [ -d "$root/lib/modules/$ver" ] || cp -al "$dir/lib/modules/$ver" "$root/lib/modules/" 2>/dev/null || cp -r "$dir/lib/modules/$ver" "$root/lib/modules/"
  shell=/bin/sh modules=/lib/modules workdir=/
fi
trap 'rm -rf "$tmp"' EXIT

# The job is pid 1 after switch_root. Everything from the caller goes
# through printf %q, so no argument is ever re-parsed as shell code.
{
  cat <<'EOF'
#!/bin/bash
# pid 1 of the test VM, written by test/vm/run.sh.
# ip netns and containers expect shared mount propagation, as under systemd.
mount --make-rshared /
ip link set lo up 2>/dev/null
echo "ADDRMAP_VM_BOOTED $(cut -d' ' -f1 /proc/uptime)"
EOF
  printf '(cd %q || exit 125\n' "$workdir"
  printf ' export HOME=/root PATH=%q\n' "$PATH"
  for e in ${envs[@]+"${envs[@]}"}; do printf ' export %q\n' "$e"; done
  printf ' exec'
  printf ' %q' "$@"
  printf ')\n'
  cat <<'EOF'
echo "ADDRMAP_VM_EXIT=$?"
# Drain the serial line first (stty sets with TCSADRAIN): a poweroff would
# cut the tail of the output still queued in the tty.
stty opost onlcr </dev/console
# pid 1 must not exit (that panics); sysrq powers off without any init system.
echo o >/proc/sysrq-trigger
sleep 60
EOF
} >"$tmp/job"

# Quiet, but kernel errors still reach the console (shown if the boot fails).
case $arch in amd64) console=ttyS0 ;; *) console=ttyAMA0 ;; esac
job=${tmp#"${root%/}"}/job
cmdline="console=$console quiet loglevel=4 panic=-1 addrmap.job=$job addrmap.modules=$modules addrmap.shell=$shell"
[ -z "${ADDRMAP_VM_9P:-}" ] || cmdline+=" addrmap.9p=$ADDRMAP_VM_9P"
# The bare vmlinux (PVH entry) skips the slow in-guest decompression.
kernel=$dir/vmlinux
[ -f "$kernel" ] || kernel=$dir/vmlinuz

# /dev/kvm exists here but cannot run a guest: always TCG.
# timeout puts qemu in its own process group, out of reach of the caller's
# Ctrl-C or kill: the traps pass those on, and the EXIT trap reaps leftovers.
# A kernel under software emulation now and then dies while it boots (an
# oops in its own timer code, seen with trixie's, before init ran): nothing
# of the test has run then, so the VM is booted once more. A VM that booted
# and then failed is never booted again.
boot() {
  rm -f "$tmp/fifo"
  mkfifo "$tmp/fifo"
  start=$EPOCHREALTIME
  case $arch in
    amd64) machine=(qemu-system-x86_64) ;;
    arm64) machine=(qemu-system-aarch64 -M virt) ;;
  esac
  timeout -k 5 "$timeout" "${machine[@]}" -accel tcg,thread=multi -cpu max -m "$mem" -smp "$cpus" \
    -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$dir/initramfs.cpio.gz" -append "$cmdline" \
    -virtfs "local,path=$root,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    </dev/null >"$tmp/fifo" 2>&1 &
  vm=$!

  # Boot chatter is kept for the failure report only; after the marker the
  # console is CMD's. Output after the exit marker is the poweroff.
  phase=boot status=
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >>"$tmp/console"
    case $phase:$line in
      boot:*ADDRMAP_VM_BOOTED*)
        phase=run
        up=$(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.1f", n - s }')
        echo "vm: $suite kernel $ver up in ${up}s (guest uptime ${line##* }s)" >&2 ;;
      run:*ADDRMAP_VM_EXIT=*)
        phase=done
        status=${line##*ADDRMAP_VM_EXIT=}
        [ "${line%ADDRMAP_VM_EXIT=*}" = "" ] || printf '%s\n' "${line%ADDRMAP_VM_EXIT=*}" ;;
      run:*) printf '%s\n' "$line" ;;
    esac
  done <"$tmp/fifo"
  qemu=0
  wait "$vm" || qemu=$?
}
vm=
trap '[ -z "$vm" ] || kill "$vm" 2>/dev/null || true; [ -z "$vm" ] || wait "$vm" 2>/dev/null || true; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
boot
if [ "$phase" = boot ] && [ "$qemu" != 124 ] && [ "$qemu" != 137 ]; then
  echo "run.sh: the $suite VM ended before its init ran (the test never started); last console lines:" >&2
  tail -n 12 "$tmp/console" >&2
  echo "run.sh: booting it once more" >&2
  : >"$tmp/console"
  boot
fi

if [ "$qemu" = 124 ] || [ "$qemu" = 137 ]; then
  echo "run.sh: timed out after ${timeout}s; last console lines:" >&2
  tail -n 40 "$tmp/console" >&2
  exit 124
fi
if ! [[ $status =~ ^[0-9]+$ ]]; then
  echo "run.sh: the VM ended without reporting an exit status (qemu $qemu); last console lines:" >&2
  tail -n 40 "$tmp/console" >&2
  exit 125
fi
exit "$status"
