#!/bin/busybox sh
# /init of the real-VMM test guest (built into the initramfs by
# build-guest.sh). It checks the network a user-mode helper gives it and
# reports on the serial console, one marker line per step:
#   AIRLOCK-GUEST start
#   AIRLOCK-GUEST lease ip=.. mask=.. router=.. dns=.. lease=.. mtu=..
#   AIRLOCK-GUEST ping ok|fail ROUTER
#   AIRLOCK-GUEST sha256 HEX|fail
#   AIRLOCK-GUEST dns NAME ADDR|fail
#   AIRLOCK-GUEST done
# then powers off. Parameters on the kernel command line:
#   airlock.port=N     HTTP port on the router address (default 8080)
#   airlock.file=NAME  file to download (default blob)
#   airlock.name=NAME  name to resolve via 10.0.2.3 (default airlock.test)
#   airlock.dns=ADDR   resolver to ask (default: the lease's DNS server)
#   airlock.mode=migrate  the migration test: after the lease, hold a TCP
#                      connection to ROUTER:airlock.hold (prints "held"),
#                      serve "fwd-ok" on TCP 8000 and resolve once, print
#                      "ready"; when the held connection ends (the reset of
#                      a migration) print "tcp-old closed", then download,
#                      resolve and finish as usual.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

say() { echo "AIRLOCK-GUEST $*"; }
say start

port=8080 file=blob name=airlock.test dnsaddr= mode= hold=9000
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	airlock.port=*) port=${arg#*=} ;;
	airlock.file=*) file=${arg#*=} ;;
	airlock.name=*) name=${arg#*=} ;;
	airlock.dns=*) dnsaddr=${arg#*=} ;;
	airlock.mode=*) mode=${arg#*=} ;;
	airlock.hold=*) hold=${arg#*=} ;;
	esac
done

for m in $(cat /lib/modules/load-order); do insmod "/lib/modules/$m.ko"; done

cat >/tmp/udhcpc.sh <<'EOF'
#!/bin/sh
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	set -- $dns
	echo "$router" >/tmp/router
	echo "$1" >/tmp/dns
	echo "AIRLOCK-GUEST lease ip=$ip mask=$mask router=$router dns=$dns lease=$lease mtu=$mtu" >/dev/console
	;;
esac
EOF
chmod +x /tmp/udhcpc.sh

ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
if udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /tmp/udhcpc.sh >/tmp/udhcpc.log 2>&1; then
	router=$(cat /tmp/router)
	[ -n "$dnsaddr" ] || dnsaddr=$(cat /tmp/dns)
	if [ "$mode" = migrate ]; then
		mkfifo /tmp/hold.in
		sleep 100000 >/tmp/hold.in &
		(nc "$router" "$hold" </tmp/hold.in >/tmp/hold.out 2>&1; say "tcp-old closed"; echo x >/tmp/hold.done) &
		(while true; do echo fwd-ok | nc -l -p 8000; done) &
		i=0
		while ! grep -q hello /tmp/hold.out 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		say "held $(cat /tmp/hold.out)"
		nslookup "$name" "$dnsaddr" >/dev/null 2>&1
		say ready
		while [ ! -s /tmp/hold.done ]; do sleep 0.05; done
	fi
	if ping -c 1 -W 3 "$router" >/dev/null 2>&1; then say "ping ok $router"; else say "ping fail $router"; fi
	# (busybox 1.35 wget -T segfaults: bound the time with timeout instead)
	if timeout 30 wget -q -O /tmp/download "http://$router:$port/$file" 2>/tmp/wget.err; then
		sum=$(sha256sum /tmp/download)
		say "sha256 ${sum%% *}"
	else
		say "sha256 fail $(cat /tmp/wget.err)"
	fi
	addr=$(timeout 20 nslookup "$name" "$dnsaddr" 2>/dev/null | awk '/^Name:/ {n=1; next} n && /^Address/ {print $NF; exit}')
	if [ -n "$addr" ]; then say "dns $name $addr"; else say "dns $name fail"; fi
else
	cat /tmp/udhcpc.log
	say "lease fail"
fi
say done
# The migration test still reaches the forward after "done".
[ "$mode" = migrate ] && sleep 600
poweroff -f
