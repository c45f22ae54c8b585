#!/usr/bin/env bash
# Builds the test guest: Debian's cloud kernel and a busybox initramfs that prints boot markers on
# the serial console, powers off on the ACPI power button, and otherwise idles. It is an image for
# the agent's image cache (image.json + files), used by the end-to-end VM test under QEMU (TCG).
#
#   images/test-guest/build.sh OUTDIR     # writes OUTDIR/test-guest/{image.json,vmlinuz,...}
#
# Needs apt-get (package lists up to date), dpkg-deb, sha256sum and qemu-img; downloads two
# packages (linux-image-*-cloud-amd64, busybox-static) without installing them. Takes ~10 s.
set -euo pipefail
out=${1:?usage: images/test-guest/build.sh OUTDIR}
for tool in apt-get apt-cache dpkg-deb sha256sum qemu-img; do
  command -v "$tool" >/dev/null || { echo "test-guest: $tool not found (Debian with qemu-utils needed)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$kernel_pkg" ] || { echo "test-guest: no linux-image-cloud-amd64 in the package lists; run apt-get update" >&2; exit 1; }
# apt's sandbox user cannot write into a root-owned temp dir; download unsandboxed.
apt-get download -qq -o APT::Sandbox::User=root "$kernel_pkg" busybox-static
dpkg-deb -x linux-image-*.deb kernel
dpkg-deb -x busybox-static_*.deb busybox

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,etc/acpi/PWRF,lib/modules}
cp busybox/bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
# Drivers the guest uses that Debian's cloud kernel builds as modules, in load order.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
         failover net_failover virtio_net button evdev)
for m in "${modules[@]}"; do
  f=$(find kernel/lib/modules -name "$m.ko" | head -n1)
  [ -n "$f" ] || { echo "test-guest: module $m not found in $kernel_pkg" >&2; exit 1; }
  cp "$f" "$root/lib/modules/"
done
cat > "$root/init" <<INIT
#!/bin/sh
export PATH=/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${modules[*]}; do insmod /lib/modules/\$m.ko 2>/dev/null; done
sleep 1
echo "VMCLOUD-TEST-GUEST: booted \$(uname -r)"
if [ -b /dev/vda ]; then echo "VMCLOUD-TEST-GUEST: disk vda \$(cat /sys/block/vda/size) sectors"; fi
for n in /sys/class/net/*; do
  [ "\${n##*/}" = lo ] || echo "VMCLOUD-TEST-GUEST: nic \${n##*/} \$(cat \$n/address)"
done
# An address given the kernel's way (ip=ADDR:::NETMASK::eth0:off): configure eth0 and ask the
# host's metadata endpoint who we are, as cloud-init's Ec2 datasource would.
for arg in \$(cat /proc/cmdline); do
  case "\$arg" in ip=*) ipconf="\${arg#ip=}" ;; esac
done
if [ -n "\$ipconf" ]; then
  addr=\$(echo "\$ipconf" | cut -d: -f1)
  mask=\$(echo "\$ipconf" | cut -d: -f4)
  ifconfig eth0 "\$addr" netmask "\$mask" up
  route add -host 169.254.169.254 dev eth0
  # busybox's static wget crashes in this initramfs; plain HTTP/1.0 over nc does the job.
  # stdin stays open a moment (nc may stop at its end before the answer came), and a request
  # that got nothing is tried again.
  md() {
    for try in 1 2 3; do
      out=\$( (printf 'GET /latest/meta-data/%s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' "\$1"; sleep 2) \
        | nc -w 10 169.254.169.254 80 | tr -d '\r' | sed '1,/^\$/d')
      [ -n "\$out" ] && break
    done
    echo "\$out"
  }
  echo "VMCLOUD-TEST-GUEST: metadata instance-id \$(md instance-id)"
  echo "VMCLOUD-TEST-GUEST: metadata local-ipv4 \$(md local-ipv4)"
  echo "VMCLOUD-TEST-GUEST: metadata openssh-key \$(md public-keys/0/openssh-key)"
fi
acpid -c /etc/acpi -l /dev/console
echo "VMCLOUD-TEST-GUEST: ready"
while true; do sleep 3600; done
INIT
cat > "$root/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
echo "VMCLOUD-TEST-GUEST: power button, powering off" > /dev/console
sync
poweroff -f
ACPI
chmod +x "$root/init" "$root/etc/acpi/PWRF/00000080"

dest=$out/test-guest
mkdir -p "$dest"
(cd "$root" && find . | "$work/busybox/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -9 > "$dest/initramfs.img"
cp kernel/boot/vmlinuz-* "$dest/vmlinuz"
rm -f "$dest/disk.qcow2"
qemu-img create -q -f qcow2 "$dest/disk.qcow2" 64M
sum() { sha256sum "$dest/$1" | cut -d' ' -f1; }
cat > "$dest/image.json" <<JSON
{
  "name": "test-guest",
  "description": "Debian cloud kernel ($kernel_pkg) + busybox initramfs printing VMCLOUD-TEST-GUEST markers",
  "kernel": { "file": "vmlinuz", "sha256": "$(sum vmlinuz)" },
  "initrd": { "file": "initramfs.img", "sha256": "$(sum initramfs.img)" },
  "cmdline": "console=ttyS0 panic=-1",
  "disk": { "file": "disk.qcow2", "format": "qcow2", "sha256": "$(sum disk.qcow2)" }
}
JSON
echo "test-guest: built $dest ($kernel_pkg)" >&2
