#!/bin/bash
# tests/bench/run.sh [-- EXTRA AIRLOCK ARGS...] — airlock's macro benchmarks (issue 9).
#
# Every measurement runs inside network namespaces made with the comparison
# rig's topo.sh (a "host" namespace whose only routes lead into a dead-end
# veth, a "guest" namespace with a tap device joined to airlock by the rig's
# netrelay); servers listen on the host namespace's loopback and the guest
# reaches them through 10.0.2.2. Nothing leaves the machine.
#
# Figures (RUNS runs, default 3; each printed per run, then the medians):
#   <framing>_<mtu>_g2h_gbps / _h2g_gbps   TCP throughput guest->host, host->guest
#                                           (iperf3 -t IPERF_SECS, receiver side)
#   <framing>_<mtu>_g2h_retrans / _h2g_retrans   the sender's retransmissions
#   <framing>_<mtu>_g2h_host_retrans        TcpRetransSegs in the host namespace during
#                                           g2h: airlock's own socket resending over loopback
#                                           (the guest's iperf3 cannot see these)
#   <framing>_<mtu>_h2g_host_ofo / _dsack / _tlp   host-namespace TcpExtTCPOFOQueue,
#                                           TcpExtTCPDSACKRecv (spurious resends the
#                                           receiver reported) and TcpExtTCPLossProbes during h2g
#   <framing>_<mtu>_cpu_s_per_GB            airlock CPU (utime+stime) per GB moved
#   <framing>_<mtu>_peak_rss_kib            airlock VmHWM after the throughput runs
#   rr_us, crr                              TCP round trip (median) and new
#                                           connections per second (rig's rr.py)
#   udp_pps, udp_loss_pct                   UDP datagrams/s received by the host's iperf3,
#                                           64-byte payloads guest->10.0.2.2 (iperf3 -u -b 0, 3 s)
#   udp_fwd_pps, udp_server_rcvbuf_drops    datagrams/s airlock sent on (host namespace
#                                           UdpOutDatagrams), and those the server's full
#                                           socket dropped (UdpRcvbufErrors)
#   idle_rss_kib                            VmRSS of a fresh airlock after DHCP
#   flows_rss_kib, per_flow_bytes           VmRSS with FLOWS (1000) idle TCP flows open,
#                                           and (after - idle) / FLOWS
#   flows_peak_kib, flows_peak_ok           VmHWM with those flows; ok = <= 8 MiB
#   ready_ms, spawn_ms                      exec to sd_notify READY=1 (median of
#                                           READY_N=20), and the bare spawn cost
#
# Environment: AIRLOCK (default target/release/airlock), RUNS, IPERF_SECS (4),
# FRAMINGS ("dgram stream"), MTUS ("65520 1500"), FLOWS (1000), READY_N (20),
# RIG (default ../shared/rig beside the repository).  Needs root.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rig=${RIG:-$here/../../../shared/rig}
if [ ! -x "$rig/topo.sh" ] || [ ! -x "$rig/setup.sh" ] || [ ! -f "$rig/rr.py" ]; then
  echo "run.sh: the comparison rig (topo.sh, setup.sh, netrelay.c, rr.py) is not at $rig;" >&2
  echo "run.sh: set RIG=/path/to/shared/rig" >&2
  exit 2
fi
rig=$(cd "$rig" && pwd)
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces, tap)" >&2; exit 2; }
airlock=${AIRLOCK:-$root/target/release/airlock}
[ -x "$airlock" ] || { echo "run.sh: no $airlock; run: cargo build --release" >&2; exit 2; }
bin=$("$rig/setup.sh") || { echo "run.sh: $rig/setup.sh failed" >&2; exit 2; }
[ "${1:-}" = "--" ] && shift
extra=("$@")
RUNS=${RUNS:-3}; SECS=${IPERF_SECS:-4}; FRAMINGS=${FRAMINGS:-"dgram stream"}
MTUS=${MTUS:-"65520 1500"}; FLOWS=${FLOWS:-1000}; READY_N=${READY_N:-20}
hz=$(getconf CLK_TCK)
tmp=$(mktemp -d)
results=$tmp/results
P=""; rpid=""; apid=""

# --- one airlock between a fresh pair of namespaces -------------------------
down() {
  [ -n "$P" ] || return 0
  for p in $(ip netns pids "$P-h" 2>/dev/null) $(ip netns pids "$P-g" 2>/dev/null); do
    kill "$p" 2>/dev/null
  done
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null
  sleep 0.3
  "$rig/topo.sh" down "$P"
  P=""; rpid=""; apid=""
}
cleanup() { exec 7>&- 2>/dev/null; down; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

n_up=0
# up FRAMING MTU: namespaces, servers, airlock, DHCP lease, guest MTU.
up() {
  local framing=$1 mtu=$2
  n_up=$((n_up + 1)); P=ab$$-$n_up
  trap down EXIT   # each figure runs in a subshell: clean up there too
  "$rig/topo.sh" up "$P" || { down; return 1; }
  ip netns exec "$P-h" iperf3 -s -D -p 5201 >/dev/null
  ip netns exec "$P-g" iperf3 -s -D -p 5201 >/dev/null
  ip netns exec "$P-h" python3 "$rig/rr.py" server 7777 &
  ip netns exec "$P-h" python3 "$here/flows.py" server 7000 &
  "$bin/netrelay" "$P-g" tap0 spawn "$framing" -- ip netns exec "$P-h" \
    "$airlock" --fd {fd} --hostfwd tcp::5202-:5201 "${extra[@]}" 2>"$tmp/airlock.log" &
  rpid=$!
  local i
  for i in $(seq 50); do
    apid=$(pgrep -P "$rpid" | head -1)
    [ -n "$apid" ] && grep -q "^Name:.*airlock" "/proc/$apid/status" 2>/dev/null && break
    sleep 0.05
  done
  [ -n "$apid" ] || { echo "run.sh: airlock did not start" >&2; cat "$tmp/airlock.log" >&2; down; return 1; }
  ip netns exec "$P-g" busybox udhcpc -i tap0 -q -n -t 5 -T 1 -s "$rig/udhcpc.script" >/dev/null 2>&1
  ip netns exec "$P-g" ip link set tap0 mtu "$mtu"
  ip -n "$P-g" -4 -o addr show tap0 | grep -q 10.0.2.15 ||
    { echo "run.sh: the guest got no lease" >&2; cat "$tmp/airlock.log" >&2; down; return 1; }
  sleep 0.5   # servers listening
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$apid/stat"; }
status_kib() { awk -v k="$1:" '$1==k{print $2}' "/proc/$apid/status"; }
# nstat counter, absolute, in namespace $1 (history untouched).
counter() { ip netns exec "$1" nstat -as "$2" 2>/dev/null | awk -v k="$2" '$1==k{print $2}' | grep . || echo 0; }
iperf_tcp() { python3 -c '
import json,sys
try:
    d=json.load(sys.stdin)["end"]
    print("%.2f %d %d"%(d["sum_received"]["bits_per_second"]/1e9, d["sum_received"]["bytes"], d["sum_sent"].get("retransmits",0)))
except Exception: print("fail 0 0")'; }
iperf_udp() { python3 -c '
import json,sys
try:
    s=json.load(sys.stdin)["end"]["sum"]
    got=s["packets"]-s["lost_packets"]
    print("%d %.1f"%(got/s["seconds"], s["lost_percent"]))
except Exception: print("fail fail")'; }

# --- the figures ---------------------------------------------------------------
throughput() {   # framing mtu run
  local f=$1 m=$2 k=$1_$2 c0 c1 g2h h2g ofo0 ofo1 ds0 ds1 tlp0 tlp1 re0 re1
  up "$f" "$m" || return 1
  c0=$(cpu_ticks)
  re0=$(counter "$P-h" TcpRetransSegs)
  g2h=$(ip netns exec "$P-g" timeout $((SECS + 15)) iperf3 -c 10.0.2.2 -p 5201 -t "$SECS" -J 2>/dev/null | iperf_tcp)
  re1=$(counter "$P-h" TcpRetransSegs)
  ofo0=$(counter "$P-h" TcpExtTCPOFOQueue); ds0=$(counter "$P-h" TcpExtTCPDSACKRecv)
  tlp0=$(counter "$P-h" TcpExtTCPLossProbes)
  h2g=$(ip netns exec "$P-h" timeout $((SECS + 15)) iperf3 -c 127.0.0.1 -p 5202 -t "$SECS" -J 2>/dev/null | iperf_tcp)
  ofo1=$(counter "$P-h" TcpExtTCPOFOQueue); ds1=$(counter "$P-h" TcpExtTCPDSACKRecv)
  tlp1=$(counter "$P-h" TcpExtTCPLossProbes)
  c1=$(cpu_ticks)
  set -- $g2h; local gb=$1 gbytes=$2 gre=$3
  set -- $h2g; local hb=$1 hbytes=$2 hre=$3
  local cpu
  cpu=$(python3 -c "b=$gbytes+$hbytes; print('%.3f'%(($c1-$c0)/$hz/(b/1e9)) if b else 'fail')")
  echo "${k}_g2h_gbps=$gb ${k}_g2h_retrans=$gre ${k}_g2h_host_retrans=$((re1 - re0))" \
       "${k}_h2g_gbps=$hb ${k}_h2g_retrans=$hre ${k}_h2g_host_ofo=$((ofo1 - ofo0))" \
       "${k}_h2g_host_dsack=$((ds1 - ds0)) ${k}_h2g_host_tlp=$((tlp1 - tlp0))" \
       "${k}_cpu_s_per_GB=$cpu ${k}_peak_rss_kib=$(status_kib VmHWM)"
  if [ "$f" = dgram ] && [ "$m" = 65520 ]; then
    local rr u
    rr=$(ip netns exec "$P-g" timeout 30 python3 "$rig/rr.py" client 10.0.2.2 7777 2000 2>/dev/null)
    echo "rr_us=$(echo "$rr" | sed -n 's/.*rr_median_us=\([0-9.]*\).*/\1/p' | grep . || echo fail)" \
         "crr=$(echo "$rr" | sed -n 's/.*crr_per_s=\([0-9]*\).*/\1/p' | grep . || echo fail)"
    local o0 o1 e0 e1
    o0=$(counter "$P-h" UdpOutDatagrams); e0=$(counter "$P-h" UdpRcvbufErrors)
    u=$(ip netns exec "$P-g" timeout 20 iperf3 -u -c 10.0.2.2 -p 5201 -l 64 -b 0 -t 3 -J 2>/dev/null | iperf_udp)
    o1=$(counter "$P-h" UdpOutDatagrams); e1=$(counter "$P-h" UdpRcvbufErrors)
    set -- $u
    echo "udp_pps=$1 udp_loss_pct=$2 udp_fwd_pps=$(( (o1 - o0) / 3 ))" \
         "udp_server_rcvbuf_drops=$((e1 - e0))"
  fi
  down
}

memory() {
  up dgram 65520 || return 1
  local idle after peak est
  idle=$(status_kib VmRSS)
  mkfifo "$tmp/hold"
  ip netns exec "$P-g" python3 "$here/flows.py" client 10.0.2.2 7000 "$FLOWS" \
    <"$tmp/hold" >"$tmp/flows.out" 2>&1 &
  exec 7>"$tmp/hold"
  local i
  for i in $(seq 600); do grep -q open= "$tmp/flows.out" && break; sleep 0.1; done
  sleep 1
  est=$(ip netns exec "$P-h" ss -Htn state established '( sport = :7000 )' | wc -l)
  after=$(status_kib VmRSS); peak=$(status_kib VmHWM)
  exec 7>&-
  rm -f "$tmp/hold"
  if [ "$est" -ne "$FLOWS" ]; then
    echo "run.sh: $est of $FLOWS idle flows established: $(cat "$tmp/flows.out")" >&2
  fi
  echo "idle_rss_kib=$idle flows_established=$est flows_rss_kib=$after" \
       "per_flow_bytes=$(( (after - idle) * 1024 / FLOWS ))" \
       "flows_peak_kib=$peak flows_peak_ok=$([ "$peak" -le 8192 ] && echo 1 || echo 0)"
  # Startup: fresh instances in the same host namespace, own socketpairs.
  ip netns exec "$P-h" python3 "$here/ready.py" "$READY_N" "$airlock" "${extra[@]}" ||
    echo "ready_ms=fail"
  down
}

echo "# airlock $("$airlock" --version 2>/dev/null | head -1) runs=$RUNS iperf=${SECS}s load=$(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  line="run=$run"
  for f in $FRAMINGS; do
    for m in $MTUS; do
      line="$line $(throughput "$f" "$m" | tr '\n' ' ')"
    done
  done
  line="$line $(memory | tr '\n' ' ')"
  echo "$line" | tr -s ' '
  echo "$line" >>"$results"
done

echo "# medians of $RUNS runs"
python3 - "$results" <<'PY'
import statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split() if "=" in kv) for l in open(sys.argv[1])]
keys = [k for k in runs[0] if k != "run"]
for k in keys:
    vals = []
    for r in runs:
        try: vals.append(float(r.get(k, "")))
        except ValueError: pass
    if not vals:
        print(f"{k}=fail"); continue
    m = statistics.median(vals)
    print(f"{k}={m:.3f}".rstrip("0").rstrip(".") if m != int(m) else f"{k}={int(m)}")
PY
