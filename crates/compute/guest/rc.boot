#!/bin/sh
# feitian guest boot (busybox init's sysinit): mounts, hostname, network, metadata, ssh.
# The kernel command line carries feitian.ip=A.B.C.D/N feitian.gw=G.G.G.G
# feitian.mac=aa:bb:cc:dd:ee:ff feitian.hostname=NAME; the metadata service is at
# 100.100.100.200. When this script ends it prints "feitian-guest: ssh ready".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

say() { echo "feitian-guest: $*" >/dev/console; }
# The firmware leaves the console mid-line (terminal escapes after "Booting from ROM"): end that
# line, so that each "feitian-guest: ..." line is exactly that.
echo >/dev/console

# 1. File systems, hostname, loopback.
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -o remount,rw / 2>/dev/null
# The system disk may be larger than the image's file system: grow it to fill the disk (online;
# nothing to do after the first boot).
resize2fs /dev/vda >/dev/null 2>&1 || say "cannot grow the root file system to the disk's size"
mkdir -p /run/feitian /var/lib/feitian /var/log

ip= gw= mac= host=
for w in $(cat /proc/cmdline); do
	case "$w" in
	feitian.ip=*) ip=${w#*=} ;;
	feitian.gw=*) gw=${w#*=} ;;
	feitian.mac=*) mac=$(echo "${w#*=}" | tr 'A-F' 'a-f') ;;
	feitian.hostname=*) host=${w#*=} ;;
	esac
done

set_hostname() {
	[ -n "$1" ] || return 0
	hostname "$1"
	echo "$1" >/etc/hostname
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$1" >/etc/hosts
}
set_hostname "$host"
ip link set lo up

# The power button (QEMU system_powerdown) -> /etc/acpi/PWRF/00000080 -> poweroff.
modprobe -q button 2>/dev/null
modprobe -q evdev 2>/dev/null
acpid -c /etc/acpi -l /var/log/acpid.log

# 2. The NIC whose MAC is feitian.mac (any name), its address and the default route.
net=
if [ -n "$ip" ]; then
	dev=
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		if [ -z "$mac" ]; then
			dev=$n
			break
		fi
		[ "$(cat "$d/address" 2>/dev/null)" = "$mac" ] && dev=$n && break
	done
	if [ -n "$dev" ]; then
		ip link set "$dev" up
		ip addr add "$ip" dev "$dev"
		[ -n "$gw" ] && ip route add default via "$gw" dev "$dev"
		net=1
	else
		say "no network interface with MAC $mac"
	fi
fi

# 3. Metadata: at most ~20 s in all, short timeouts, never hang the boot.
MD=http://100.100.100.200/latest
fetch() { # fetch PATH FILE: the body in FILE, or fail (and no FILE)
	# (busybox 1.35's wget -T crashes: timeout(1) bounds it instead.)
	if timeout 3 wget -q -O "$2.part" "$MD/$1" 2>/dev/null; then
		mv "$2.part" "$2"
	else
		rm -f "$2.part"
		return 1
	fi
}
if [ -n "$net" ]; then
	start=$(cut -d. -f1 /proc/uptime)
	while ! fetch meta-data/instance-id /run/feitian/instance-id; do
		[ $(($(cut -d. -f1 /proc/uptime) - start)) -ge 17 ] && break
		usleep 300000
	done
	if [ -s /run/feitian/instance-id ]; then
		if fetch meta-data/hostname /run/feitian/hostname; then
			set_hostname "$(head -n 1 /run/feitian/hostname | tr -cd 'A-Za-z0-9.-')"
		fi
		if fetch meta-data/public-keys/0/openssh-key /run/feitian/openssh-key && [ -s /run/feitian/openssh-key ]; then
			mkdir -p /root/.ssh
			chmod 700 /root/.ssh
			cp /run/feitian/openssh-key /root/.ssh/authorized_keys
			chmod 600 /root/.ssh/authorized_keys
		fi
		fetch user-data /run/feitian/user-data || rm -f /run/feitian/user-data
	else
		say "metadata service unreachable"
	fi
fi

# 4. SSH, keys only (-s); -R: each host key is made when first needed, then kept in
# /etc/dropbear.
mkdir -p /etc/dropbear
dropbear -R -s -p 22 -P /run/dropbear.pid 2>>/var/log/dropbear.log
say "ssh ready"
