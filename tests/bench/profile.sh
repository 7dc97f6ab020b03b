#!/bin/bash
# tests/bench/profile.sh [g2h|h2g ...] [-- EXTRA AIRLOCK ARGS...] — where airlock's time goes.
#
# For each direction (default both), in fresh rig namespaces (see run.sh):
#   1. perf record -g on airlock during an iperf3 run, then a report of the top
#      symbols (children off) and the kernel/user split;
#   2. perf stat of every syscalls:sys_enter_* tracepoint on airlock during a
#      second iperf3 run, printed as syscalls per GB moved;
#   3. nstat deltas of both namespaces over that run (retransmissions,
#      out-of-order queueing, drops).
# Output goes to stdout; perf data files to $OUT (default a temporary folder,
# kept and named at the end).  Also, two seconds into each run, `ss -ti` of
# the sending iperf3's socket (cwnd, rwnd- and sndbuf-limited time, the
# window it is offered).  HELPER=passt profiles $PASST (default: passt on
# PATH; STREAM framing, compare.sh's flags) the same way, for side-by-side
# tables.  Environment: AIRLOCK, HELPER (airlock), PASST, MTU (65520),
# FRAMING (dgram), IPERF_SECS (4), RIG, OUT.  Needs root and perf (Debian:
# linux-perf).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rig=${RIG:-$here/../../../shared/rig}
if [ ! -x "$rig/topo.sh" ] || [ ! -x "$rig/setup.sh" ]; then
  echo "profile.sh: the comparison rig is not at $rig; set RIG=/path/to/shared/rig" >&2
  exit 2
fi
rig=$(cd "$rig" && pwd)
[ "$(id -u)" = 0 ] || { echo "profile.sh: needs root" >&2; exit 2; }
command -v perf >/dev/null || { echo "profile.sh: no perf (apt-get install linux-perf)" >&2; exit 2; }
airlock=${AIRLOCK:-$root/target/release/airlock}
[ -x "$airlock" ] || { echo "profile.sh: no $airlock; run: cargo build --release" >&2; exit 2; }
bin=$("$rig/setup.sh") || exit 2
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(g2h h2g)
MTU=${MTU:-65520}; FRAMING=${FRAMING:-dgram}; SECS=${IPERF_SECS:-4}
HELPER=${HELPER:-airlock}
if [ "$HELPER" = passt ]; then
  FRAMING=stream
  helper=("${PASST:-passt}" -f -q --fd {fd} -a 10.0.2.15 -n 24 -g 10.0.2.2 --mtu "$MTU" -t 5202:5201)
else
  helper=("$airlock" --fd {fd} --hostfwd tcp::5202-:5201)
fi
out=${OUT:-$(mktemp -d /tmp/airlock-profile.XXXX)}
mkdir -p "$out"
P=ap$$; rpid=""; apid=""

down() {
  for p in $(ip netns pids "$P-h" 2>/dev/null) $(ip netns pids "$P-g" 2>/dev/null); do kill "$p" 2>/dev/null; done
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null
  sleep 0.3; "$rig/topo.sh" down "$P"
}
trap down EXIT
"$rig/topo.sh" up "$P"
ip netns exec "$P-h" iperf3 -s -D -p 5201 >/dev/null
ip netns exec "$P-g" iperf3 -s -D -p 5201 >/dev/null
"$bin/netrelay" "$P-g" tap0 spawn "$FRAMING" -- ip netns exec "$P-h" \
  "${helper[@]}" "${extra[@]}" 2>"$out/helper.log" &
rpid=$!
for _ in $(seq 50); do
  apid=$(pgrep -P "$rpid" | head -1)
  [ -n "$apid" ] && ! grep -q "^Name:.*ip$" "/proc/$apid/status" 2>/dev/null && break
  sleep 0.05
done
ip netns exec "$P-g" busybox udhcpc -i tap0 -q -n -t 5 -T 1 -s "$rig/udhcpc.script" >/dev/null 2>&1
ip netns exec "$P-g" ip link set tap0 mtu "$MTU"
sleep 0.5

iperf() {   # direction -> runs iperf3, prints "Gbit/s bytes retransmits"
  local cmd
  if [ "$1" = g2h ]; then cmd=(ip netns exec "$P-g" iperf3 -c 10.0.2.2 -p 5201)
  else cmd=(ip netns exec "$P-h" iperf3 -c 127.0.0.1 -p 5202); fi
  (sleep 2; sender_ss "$1" >"$out/$1.ss") &
  timeout $((SECS + 15)) "${cmd[@]}" -t "$SECS" -J 2>/dev/null | python3 -c '
import json,sys
try:
    d=json.load(sys.stdin)["end"]
    print("%.2f %d %d"%(d["sum_received"]["bits_per_second"]/1e9, d["sum_received"]["bytes"], d["sum_sent"].get("retransmits",0)))
except Exception: print("fail 0 0")'
}
sender_ss() {   # the sending iperf3's data socket, as its kernel sees it
  if [ "$1" = g2h ]; then ip netns exec "$P-g" ss -tinH dst 10.0.2.2:5201
  else ip netns exec "$P-h" ss -tinH dst 127.0.0.1:5202; fi
}
# utime+stime ticks of airlock, of each netrelay thread (the relay: tap<->socket),
# of the iperf3 servers on each side, and of the whole machine (every core's
# non-idle time in /proc/stat, softirqs included: what the run left to spare).
ticks() {
  printf "%s %s\n" "$HELPER" "$(awk '{print $14+$15}' "/proc/$apid/stat")"
  for t in /proc/"$rpid"/task/*; do printf "relay-%s %s\n" "${t##*/}" "$(awk '{print $14+$15}' "$t/stat")"; done
  for side in h g; do
    printf "iperf3-%s %s\n" "$side" "$(for p in $(ip netns pids "$P-$side"); do
      [ "$(cat "/proc/$p/comm" 2>/dev/null)" = iperf3 ] && awk '{print $14+$15}' "/proc/$p/stat"
    done | awk '{s+=$1} END{print s+0}')"
  done
  printf "machine(%s-cores) %s\n" "$(nproc)" "$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)"
}
cpu_share() {   # before-file after-file seconds -> "name=NN%" of one CPU
  awk -v s="$3" -v hz="$(getconf CLK_TCK)" 'NR==FNR{b[$1]=$2; next} {printf "  %s=%.0f%%", $1, 100*($2-b[$1])/hz/s} END{print ""}' "$1" "$2"
}
nstat_all() { ip netns exec "$1" nstat -as 2>/dev/null | awk 'NR>1{print $1, $2}'; }
nstat_delta() {   # before-file after-file -> interesting counters that moved
  awk 'NR==FNR{b[$1]=$2; next} { d=$2-b[$1]; if (d && $1 ~ /Retrans|OFO|Reorder|DSACK|Drop|Prune|Collapse|Timeout|LossProbe|Lost|FastRetrans|SACKRecovery|Spurious|ZeroWindow|InSegs|OutSegs/) printf "  %s=%d", $1, d } END{print ""}' "$1" "$2"
}

for d in "${dirs[@]}"; do
  echo "== $d mtu=$MTU framing=$FRAMING"
  # 1. Call graphs.
  perf record -q -g -p "$apid" -o "$out/$d.perf.data" -- sleep $((SECS + 1)) >/dev/null 2>&1 &
  ppid=$!
  sleep 0.2
  echo "perf record run: $(iperf "$d")  (Gbit/s bytes retransmits)"
  wait "$ppid"
  perf report -i "$out/$d.perf.data" --no-children --sort sym --percent-limit 1.5 --stdio -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -30
  perf report -i "$out/$d.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -6
  # 2. Syscalls per GB, and 3. nstat, over a second run.
  nstat_all "$P-h" >"$out/h0"; nstat_all "$P-g" >"$out/g0"; ticks >"$out/t0"
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$apid" -o "$out/$d.stat" -- sleep $((SECS + 1)) >/dev/null 2>&1 &
  ppid=$!
  sleep 0.2
  t0=$(date +%s.%N)
  r=$(iperf "$d")
  ticks >"$out/t1"; t1=$(date +%s.%N)
  wait "$ppid"
  nstat_all "$P-h" >"$out/h1"; nstat_all "$P-g" >"$out/g1"
  echo "perf stat run: $r  (Gbit/s bytes retransmits)"
  set -- $r
  bytes=$2
  echo "syscalls per GB moved (perf stat, whole ${SECS}+1 s window):"
  awk -F, -v b="$bytes" '$1 ~ /^[0-9]+$/ && $1 > 0 { sub("syscalls:sys_enter_", "", $3); printf "  %-16s %10d  %9.0f/GB\n", $3, $1, $1 / (b / 1e9) }' "$out/$d.stat" | sort -k2 -nr | head -15
  echo "CPU (share of one core over the iperf3 run; iperf3-h/-g: the iperf3 servers of each side; the client has exited by the second reading and counts only in machine):$(cpu_share "$out/t0" "$out/t1" "$(echo "$t1 - $t0" | bc -l)")"
  echo "nstat host namespace:$(nstat_delta "$out/h0" "$out/h1")"
  echo "nstat guest namespace:$(nstat_delta "$out/g0" "$out/g1")"
  echo "sender socket 2 s in (ss -ti):"
  grep -o 'cwnd:[0-9]*\|snd_wnd:[0-9]*\|rwnd_limited:[^ ]*\|sndbuf_limited:[^ ]*\|busy:[^ ]*\|retrans:[^ ]*\|bbr:([^)]*)\|delivery_rate [^ ]*' "$out/$d.ss" | tr '\n' ' ' | sed 's/^/  /'; echo
done
echo "perf data: $out"
