#!/bin/bash
# tests/demo.sh [AIRLOCK OPTIONS...] — airlock end to end in one minute, as root.
#
# Builds airlock, makes a throwaway guest network namespace (a tap device,
# like a VM's NIC) and a host namespace whose only routes lead to a dead end
# (so nothing can leave this machine), starts `airlock --netns` in the host
# namespace, leases an address with busybox udhcpc, shows the guest's view
# pings the router, downloads a file from a server on the host namespace's
# loopback through the router address, connects into the guest through a
# forward, and looks a name up through the virtual DNS address (answered by a
# resolver on the host namespace's loopback, named by its resolv.conf).
# Everything is torn down on exit, also on failure.
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

step "start: airlock --netns /run/netns/$g --hostfwd tcp::5202-:5201 $*"
ip netns exec "$h" "$airlock" --netns "/run/netns/$g" --hostfwd tcp::5202-:5201 "$@" 2>"$work/airlock.log" &
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
  echo "$router" >"$WORK/router"; echo "$dns" >"$WORK/dns" ;;
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
dns=$(cut -d' ' -f1 "$work/dns")

step "guest view: ip addr / ip route"
ip -n "$g" addr show dev tap0
ip -n "$g" route

step "ping the router ($router)"
ip netns exec "$g" busybox ping -c 2 -W 2 "$router"

step "guest view: ip neigh (the router's MAC is slirp's 52:55:<its IPv4 address>)"
ip -n "$g" neigh show dev tap0

step "TCP download: a 64 MiB file from the host namespace's loopback, via $router"
head -c $((64 << 20)) /dev/urandom >"$work/blob"
want=$(sha256sum <"$work/blob" | cut -d' ' -f1)
ip netns exec "$h" python3 -m http.server -b 127.0.0.1 8080 -d "$work" >/dev/null 2>&1 &
disown
for _ in $(seq 50); do ip netns exec "$h" bash -c '</dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
got=$(ip netns exec "$g" busybox wget -q -O - "http://$router:8080/blob" | sha256sum | cut -d' ' -f1)
t1=$(date +%s.%N)
echo "sha256 sent $want"
echo "sha256 got  $got"
[ "$got" = "$want" ] || { echo "checksum mismatch" >&2; exit 1; }
python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'64 MiB in {t:.2f} s ({64*8*1.048576/t/1000:.2f} Gbit/s, python http.server on the host side)')" "$t0" "$t1"

step "forward: host 127.0.0.1:5202 -> guest port 5201 (--hostfwd tcp::5202-:5201)"
ip netns exec "$g" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1); s.settimeout(10)
c, a = s.accept()
c.sendall(b"hello from the guest; it sees you as %s\n" % a[0].encode())
c.close()' &
sleep 0.3
ip netns exec "$h" python3 -c '
import socket
print(socket.create_connection(("127.0.0.1", 5202), timeout=5).recv(200).decode(), end="")'
wait $! 2>/dev/null || true

step "DNS: a resolver on the host namespace's loopback (its resolv.conf), asked through $dns"
ip netns exec "$h" python3 tests/qemu/dns.py 127.0.0.1 53 demo.airlock.test=192.0.2.77 >/dev/null 2>&1 &
disown
sleep 0.3
ip netns exec "$g" busybox nslookup demo.airlock.test "$dns"

step "airlock's own view (uid, sandbox) from /proc"
grep -E '^(Uid|Gid|CapEff|NoNewPrivs|Seccomp):' "/proc/$pid/status"

step "done (tearing down)"
