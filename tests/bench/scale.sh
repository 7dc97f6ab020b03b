#!/bin/bash
# tests/bench/scale.sh — how cost grows with work, for airlock, passt and libslirp.
#
# Same rig as run.sh (a "host" namespace reaching only its loopback, a
# "guest" namespace with a tap joined to the helper by the rig's netrelay).
# For each helper (HELPERS, default "airlock passt slirp"), RUNS runs (3):
#   flows_<N>_gbps, flows_<N>_cpu_s_per_GB   guest->host TCP with N concurrent
#       bulk flows (FLOWS, default "1 10 100 1000"): iperf3 clients spread over
#       8 servers on the host's loopback, IPERF_SECS (4) each, aggregate
#       received by the servers; CPU = the helper's utime+stime per GB moved
#   accept_<CONNS>_s  seconds for the guest to open (and close) CONNS (10000)
#                     connections to a host server, 100 at a time
#   rss10_kib, pss10_kib   total VmRSS and Pss of 10 instances side by side,
#                     each with its own guest holding a lease
# Then the medians, and (with gnuplot) $OUT/scale.svg: throughput and CPU per
# GB against flow count.  The helpers: AIRLOCK (target/release/airlock,
# DGRAM framing), PASST (passt on PATH; STREAM framing, passt's own
# addressing flags as in compare.sh), the rig's slirp-ref (libslirp).
# Environment: RUNS, IPERF_SECS, FLOWS, CONNS, MTU (65520), RIG, OUT.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rig=${RIG:-$here/../../../shared/rig}
[ -x "$rig/topo.sh" ] && [ -x "$rig/setup.sh" ] ||
  { echo "scale.sh: the comparison rig is not at $rig; set RIG=/path/to/shared/rig" >&2; exit 2; }
rig=$(cd "$rig" && pwd)
[ "$(id -u)" = 0 ] || { echo "scale.sh: needs root" >&2; exit 2; }
airlock=${AIRLOCK:-$root/target/release/airlock}
passt=${PASST:-passt}
bin=$("$rig/setup.sh") || exit 2
RUNS=${RUNS:-3}; SECS=${IPERF_SECS:-4}; FLOWS=${FLOWS:-"1 10 100 1000"}
CONNS=${CONNS:-10000}; MTU=${MTU:-65520}; HELPERS=${HELPERS:-"airlock passt slirp"}
out=${OUT:-$(mktemp -d /tmp/airlock-scale.XXXX)}
mkdir -p "$out"
hz=$(getconf CLK_TCK)
ups=()   # "prefix relay-pid helper-pid" of every instance up

helper_cmd() {   # helper -> framing, then the argv ({fd}: the VMM socket)
  case $1 in
    airlock) echo dgram "$airlock" --fd {fd} ;;
    passt) echo stream "$passt" -f -q --fd {fd} -a 10.0.2.15 -n 24 -g 10.0.2.2 --mtu "$MTU" ;;
    slirp) echo dgram "$bin/slirp-ref" --fd {fd} --mtu "$MTU" ;;
  esac
}

down_all() {
  local u p
  for u in "${ups[@]}"; do
    set -- $u
    for p in $(ip netns pids "$1-h" 2>/dev/null) $(ip netns pids "$1-g" 2>/dev/null); do kill "$p" 2>/dev/null; done
    kill "$2" 2>/dev/null
  done
  sleep 0.3
  for u in "${ups[@]}"; do set -- $u; "$rig/topo.sh" down "$1"; done
  ups=()
}
trap down_all EXIT
trap 'exit 130' INT TERM

n_up=0
up() {   # helper -> one instance in fresh namespaces; sets P and HPID
  local framing argv i rpid
  read -r framing argv <<<"$(helper_cmd "$1")"
  n_up=$((n_up + 1)); P=as$$-$n_up
  "$rig/topo.sh" up "$P" || return 1
  # shellcheck disable=SC2086  # argv is the helper's words
  "$bin/netrelay" "$P-g" tap0 spawn "$framing" -- ip netns exec "$P-h" $argv 2>"$out/$P.log" &
  rpid=$!
  HPID=""
  for i in $(seq 50); do
    HPID=$(pgrep -P "$rpid" | head -1)
    [ -n "$HPID" ] && ! grep -q "^Name:.*ip$" "/proc/$HPID/status" 2>/dev/null && break
    sleep 0.05
  done
  ups+=("$P $rpid ${HPID:-0}")
  ip netns exec "$P-g" busybox udhcpc -i tap0 -q -n -t 5 -T 1 -s "$rig/udhcpc.script" >/dev/null 2>&1
  ip netns exec "$P-g" ip link set tap0 mtu "$MTU"
  ip -n "$P-g" -4 -o addr show tap0 | grep -q 10.0.2.15 ||
    { echo "scale.sh: $1 gave the guest no lease" >&2; return 1; }
}

ticks() { awk '{print $14+$15}' "/proc/$HPID/stat" 2>/dev/null || echo 0; }

bulk() {   # N -> "Gbit/s cpu_s_per_GB", guest->host, N flows over 8 servers
  local n=$1 procs=8 i per rest c0 c1
  [ "$n" -lt $procs ] && procs=$n
  per=$((n / procs)); rest=$((n % procs))
  for i in $(seq $procs); do ip netns exec "$P-h" iperf3 -s -D -1 -p $((5300 + i)) >/dev/null; done
  sleep 0.3
  c0=$(ticks)
  for i in $(seq $procs); do
    local k=$per; [ "$i" -le "$rest" ] && k=$((k + 1))
    ip netns exec "$P-g" timeout $((SECS + 30)) iperf3 -c 10.0.2.2 -p $((5300 + i)) -P "$k" \
      -t "$SECS" -J >"$out/bulk.$i.json" 2>/dev/null &
  done
  wait
  c1=$(ticks)
  python3 - "$c0" "$c1" "$hz" "$out"/bulk.*.json <<'PY'
import json, sys
c0, c1, hz = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
bits = bytes_ = 0.0
secs = 0.0
for f in sys.argv[4:]:
    try:
        e = json.load(open(f))["end"]["sum_received"]
        bits += e["bits_per_second"]; bytes_ += e["bytes"]
    except Exception:
        pass
print("%.2f %s" % (bits / 1e9, "%.3f" % ((c1 - c0) / hz / (bytes_ / 1e9)) if bytes_ else "fail"))
PY
  rm -f "$out"/bulk.*.json
}

accepts() {   # seconds for the guest to open and close CONNS connections
  ip netns exec "$P-h" python3 "$here/flows.py" acceptor 7000 &
  local srv=$!
  sleep 0.3
  ip netns exec "$P-g" timeout 300 python3 "$here/flows.py" churn 10.0.2.2 7000 "$CONNS" || echo fail
  kill "$srv" 2>/dev/null
}

memory10() {   # total VmRSS and Pss (KiB) of 10 instances with a lease each
  local h=$1 i u rss=0 pss=0 r s
  for i in $(seq 10); do up "$h" || return 1; done
  sleep 1
  for u in "${ups[@]}"; do
    set -- $u
    r=$(awk '/^VmRSS/{print $2}' "/proc/$3/status" 2>/dev/null || echo 0)
    s=$(awk '/^Pss:/{print $2}' "/proc/$3/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + r)); pss=$((pss + s))
  done
  echo "rss10_kib=$rss pss10_kib=$pss"
  down_all
}

results=$out/results
: >"$results"
echo "# scale.sh runs=$RUNS iperf=${SECS}s mtu=$MTU flows=\"$FLOWS\" conns=$CONNS load=$(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for h in $HELPERS; do
    line="helper=$h run=$run"
    up "$h" || { down_all; continue; }
    for n in $FLOWS; do
      set -- $(bulk "$n")
      line="$line flows_${n}_gbps=$1 flows_${n}_cpu_s_per_GB=$2"
    done
    line="$line accept_${CONNS}_s=$(accepts)"
    down_all
    line="$line $(memory10 "$h")"
    echo "$line"
    echo "$line" >>"$results"
  done
done

echo "# medians of $RUNS runs"
python3 - "$results" "$out" "$FLOWS" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1]) if l.strip()]
flows = sys.argv[3].split()
med = {}
for h in dict.fromkeys(r["helper"] for r in rows):
    rs = [r for r in rows if r["helper"] == h]
    keys = [k for k in rs[0] if k not in ("helper", "run")]
    m = {}
    for k in keys:
        vals = []
        for r in rs:
            try: vals.append(float(r.get(k, "")))
            except ValueError: pass
        m[k] = statistics.median(vals) if vals else None
    med[h] = m
    print(f"{h}: " + " ".join(f"{k}={v:g}" if v is not None else f"{k}=fail" for k, v in m.items()))
with open(f"{sys.argv[2]}/scale.dat", "w") as f:
    f.write("# flows " + " ".join(f"{h}_gbps {h}_cpu" for h in med) + "\n")
    for n in flows:
        f.write(n + " " + " ".join(
            f"{med[h].get(f'flows_{n}_gbps') or 'NaN'} {med[h].get(f'flows_{n}_cpu_s_per_GB') or 'NaN'}"
            for h in med) + "\n")
if "airlock" in med:
    a = med["airlock"]
    one, many = a.get(f"flows_{flows[0]}_gbps"), a.get(f"flows_{flows[-1]}_gbps")
    if one and many:
        print(f"airlock: {flows[-1]} flows carry {100 * many / one:.0f}% of the {flows[0]}-flow throughput")
PY
if command -v gnuplot >/dev/null; then
  helpers=($HELPERS)
  plot1="" plot2=""
  for i in "${!helpers[@]}"; do
    plot1="$plot1'$out/scale.dat' using 1:$((2 * i + 2)) with linespoints title '${helpers[$i]}',"
    plot2="$plot2'$out/scale.dat' using 1:$((2 * i + 3)) with linespoints title '${helpers[$i]}',"
  done
  gnuplot <<EOF
set terminal svg size 900,380
set output '$out/scale.svg'
set multiplot layout 1,2
set logscale x; set xlabel 'concurrent guest->host flows'; set key top right
set ylabel 'Gbit/s (aggregate)'; plot ${plot1%,}
set ylabel 'CPU s per GB'; plot ${plot2%,}
EOF
  echo "plot: $out/scale.svg"
fi
echo "data: $out"
