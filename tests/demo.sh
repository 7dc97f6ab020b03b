#!/bin/bash
# tests/demo.sh [AIRLOCK OPTIONS...] — airlock end to end in one minute, as root.
#
# Builds airlock, makes a throwaway guest network namespace (a tap device,
# like a VM's NIC) and a host namespace whose only routes lead to a dead end
# (so nothing can leave this machine), starts `airlock --netns` in the host
# namespace, leases an address with busybox udhcpc, shows the guest's view
# and pings the router. Everything is torn down on exit, also on failure.
# Extra arguments go to airlock, e.g. `tests/demo.sh --net=10.7.0.9/16`.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cargo build --release --quiet
airlock=$PWD/target/release/airlock

p=airlock-demo-$$
g=$p-g
h=$p-h
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for ns in "$g" "$h"; do
    for q in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$q" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "/etc/netns/$h" "$work"
}
trap cleanup EXIT

step "namespaces: guest $g (tap0), host $h (dead-end routes)"
ip netns add "$g"
ip netns add "$h"
ip -n "$g" link set lo up
ip -n "$g" tuntap add tap0 mode tap
ip -n "$g" link set tap0 up
ip -n "$h" link set lo up
ip -n "$h" link add up0 type veth peer name up0-sink
ip -n "$h" link set up0-sink up
ip -n "$h" link set up0 up
ip -n "$h" addr add 192.0.2.2/24 dev up0
ip -n "$h" addr add fd00::2/64 dev up0 nodad
ip -n "$h" route add default via 192.0.2.1
ip -n "$h" route add default via fd00::1
ip netns exec "$h" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
mkdir -p "/etc/netns/$h"
echo "nameserver 127.0.0.1" >"/etc/netns/$h/resolv.conf"

step "start: airlock --netns /run/netns/$g $*"
ip netns exec "$h" "$airlock" --netns "/run/netns/$g" "$@" 2>"$work/airlock.log" &
pid=$!
for _ in $(seq 50); do
  ip -n "$g" link show tap0 | grep -q LOWER_UP && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! ip -n "$g" link show tap0 | grep -q LOWER_UP; then
  echo "airlock did not attach to tap0; its log:" >&2
  cat "$work/airlock.log" >&2
  exit 1
fi

step "lease: busybox udhcpc in the guest"
cat >"$work/udhcpc.script" <<'SCRIPT'
#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
bound|renew)
  echo "lease: ip=$ip/$mask router=$router dns=$dns mtu=${mtu:-} lease=${lease}s server=$serverid"
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  [ -n "${mtu:-}" ] && ip link set dev "$interface" mtu "$mtu"
  for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
  echo "$router" >"$WORK/router" ;;
esac
SCRIPT
chmod +x "$work/udhcpc.script"
if ! WORK=$work ip netns exec "$g" busybox udhcpc -f -q -n -t 3 -T 1 -i tap0 \
  -s "$work/udhcpc.script" -O mtu -O search; then
  echo "no lease; airlock's log:" >&2
  cat "$work/airlock.log" >&2
  exit 1
fi
router=$(cut -d' ' -f1 "$work/router")

step "guest view: ip addr / ip route"
ip -n "$g" addr show dev tap0
ip -n "$g" route

step "ping the router ($router)"
ip netns exec "$g" busybox ping -c 2 -W 2 "$router"

step "guest view: ip neigh (the router's MAC is slirp's 52:55:<its IPv4 address>)"
ip -n "$g" neigh show dev tap0

# ---- LATER (issue: TCP/UDP flows): a TCP download ----
# Serve a file on the host namespace's loopback and fetch it from the guest
# through the router address (10.0.2.2 -> 127.0.0.1), e.g.:
#   ip netns exec "$h" python3 -m http.server -b 127.0.0.1 8080 -d "$work" &
#   ip netns exec "$g" busybox wget -O - "http://$router:8080/..."

# ---- LATER (issue: forwards): a forwarded connection ----
# Start airlock with --hostfwd tcp::5202-:5201 (or -t 5202:5201), listen in
# the guest (busybox nc -l -p 5201) and connect from the host namespace to
# 127.0.0.1:5202.

# ---- LATER (issue: DNS): a DNS lookup ----
# Answer on the host namespace's loopback (its resolv.conf names 127.0.0.1)
# and look a name up from the guest through the DNS address from the lease
# (busybox nslookup NAME "$dns").

step "done (tearing down)"
