#!/bin/bash
# build-guest.sh [CACHE_DIR] — build the tiny Linux guest the real-VMM tests
# boot under QEMU (TCG), from Debian's packages, at test time. Nothing it
# makes is committed. Prints the cache directory on stdout; inside it:
#   vmlinuz        Debian's cloud kernel (virtio-net is a module there)
#   initrd.gz      busybox-static, the virtio-net modules and guest-init.sh
#   stamp          what was built from; a matching stamp skips the rebuild
#
# The guest's /init (tests/qemu/guest-init.sh) reads its parameters from the
# kernel command line (airlock.port=, airlock.file=, airlock.name=) and prints
# AIRLOCK-GUEST markers on ttyS0; see that file.
#
# Default cache: $AIRLOCK_GUEST_DIR, else $CARGO_TARGET_DIR/qemu-guest, else
# /tmp/airlock-qemu-guest. Needs apt-get (download only: nothing is
# installed), dpkg-deb, gzip (the archive is made by the downloaded busybox).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${AIRLOCK_GUEST_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/qemu-guest}}}
out=${out:-/tmp/airlock-qemu-guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The meta package names the current ABI's image package.
meta=${AIRLOCK_GUEST_KERNEL:-linux-image-cloud-amd64}
kpkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}' || true)
if [ -z "$kpkg" ]; then
	apt-get update -qq >&2
	kpkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$kpkg" ] || { echo "build-guest: cannot resolve $meta" >&2; exit 1; }

stamp="$kpkg busybox-static $(sha256sum "$here/guest-init.sh" "$0" | sha256sum | cut -c1-16)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
	[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ]; then
	echo "$out"
	exit 0
fi

work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt-get download drops privileges to _apt when it can: let it write here.
chmod 0777 "$work"
apt-get download -q "$kpkg" busybox-static >&2 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
ls ./*.deb >/dev/null
dpkg-deb -x "$(ls linux-image-*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" bb

kver=$(ls kernel/lib/modules)
moddir=kernel/lib/modules/$kver
cp "kernel/boot/vmlinuz-$kver" vmlinuz

# virtio-net and what it needs: a module's dependencies come from its own
# .modinfo "depends=" (the package ships no modules.dep: depmod makes it at
# install time). Built-in drivers need nothing; load order is dependencies
# first.
find_ko() { find "$moddir" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1; }
order=()
visit() {
	local m=$1 f d
	case " ${order[*]} " in *" $m "*) return ;; esac
	if grep -qE "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then return; fi
	f=$(find_ko "$m")
	[ -n "$f" ] || { echo "build-guest: module $m not found" >&2; exit 1; }
	case "$f" in *.ko) ;; *) echo "build-guest: compressed module $f unsupported" >&2; exit 1 ;; esac
	for d in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do visit "$d"; done
	order+=("$m")
}
for m in virtio_pci virtio_net; do visit "$m"; done

root=initramfs
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules}
cp bb/bin/busybox "$root/bin/busybox"
for m in "${order[@]}"; do cp "$(find_ko "$m")" "$root/lib/modules/$m.ko"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"
cp "$here/guest-init.sh" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"
bb=$work/bb/bin/busybox
(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc) | gzip -6 >initrd.gz

mv vmlinuz initrd.gz "$out/"
echo "$stamp" >"$out/stamp"
echo "build-guest: $kpkg, modules: ${order[*]}" >&2
echo "$out"
