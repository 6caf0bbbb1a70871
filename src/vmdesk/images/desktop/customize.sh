#!/bin/sh
# mmdebstrap's customize hook for VM-Desk's desktop image: runs on the host once every
# package is installed, with the root file system in $1. Everything the recipe varies
# comes in the environment (see vmdesk/images/desktop.py):
#   VMDESK_ROOT_UUID    the root file system's UUID (ext4, made later from this tree)
#   VMDESK_ESP_UUID     the EFI system partition's volume id (XXXX-XXXX)
#   VMDESK_CONSOLE      the serial console (ttyS0, ttyAMA0)
#   VMDESK_GRUB_TARGET  GRUB's platform (x86_64-efi, arm64-efi)
#   VMDESK_OUT          where the boot loader and the package list go, outside the tree
#   VMDESK_BUILD_START  when the build began (seconds since 1970)
#   SOURCE_DATE_EPOCH   the time files made since then are given
set -eu
root=$1

# Units of the image (their files came with the overlay, before the packages).
chroot "$root" systemctl enable --quiet vmdesk-ready.service vmdesk-autologin.service \
    vmdesk-desktop-ready.service vmdesk-xpra-cert.service systemd-networkd.service \
    systemd-resolved.service
chroot "$root" systemctl set-default --quiet graphical.target
# spice-vdagentd's socket is started only by a udev rule when the SPICE port appears, and
# in some boots that never happened: the session's agent gave up after 60 tries and the
# clipboard stayed off. Listening from boot on, the daemon starts when the agent connects.
mkdir -p "$root/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/spice-vdagentd.socket \
    "$root/etc/systemd/system/sockets.target.wants/spice-vdagentd.socket"
# The xpra server is started by whoever uses it (xpra start, or over SSH); the package's
# system-wide proxy would only cost boot time.
chroot "$root" systemctl disable --quiet xpra.service xpra.socket 2>/dev/null || true
# It removes leftover LVM snapshots of e2scrub, which a VM's disk never has.
chroot "$root" systemctl disable --quiet e2scrub_reap.service

# Each VM makes its own host keys, machine id and xpra certificate on its first boot
# (cloud-init, systemd, vmdesk-xpra-cert.service).
rm -f "$root"/etc/ssh/ssh_host_* "$root"/etc/xpra/key.pem "$root"/etc/xpra/cert.pem \
    "$root"/etc/xpra/ssl-cert.pem
: > "$root/etc/machine-id"
echo debian > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    > "$root/etc/hosts"
chmod 0644 "$root/etc/hostname" "$root/etc/hosts"  # mmdebstrap copied the build host's
# mmdebstrap copied the build host's resolver; the guest's is systemd-resolved's stub.
rm -f "$root/etc/resolv.conf"
ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

cat > "$root/etc/fstab" <<EOF
UUID=$VMDESK_ROOT_UUID / ext4 rw,discard,errors=remount-ro 0 1
UUID=$VMDESK_ESP_UUID /boot/efi vfat umask=0077,nofail 0 2
EOF
mkdir -p "$root/boot/efi"

# Xfce's panel asks on its first start which layout to use unless a layout is configured:
# the default one, for every user.
xml="$root/etc/xdg/xfce4/xfconf/xfce-perchannel-xml"
mkdir -p "$xml"
cp "$root/etc/xdg/xfce4/panel/default.xml" "$xml/xfce4-panel.xml"

# GRUB: the firmware runs the image on the ESP's removable-media path, whose embedded
# configuration reads /boot/grub/grub.cfg from the root file system (installing Debian's
# grub-efi package later replaces that file with its own, which boots the same way).
# /vmlinuz and /initrd.img follow kernel upgrades.
mkdir -p "$root/boot/grub"
cat > "$root/boot/grub/grub.cfg" <<EOF
set timeout=0
search --no-floppy --fs-uuid --set=root $VMDESK_ROOT_UUID
menuentry 'Debian GNU/Linux 12 (VM-Desk desktop)' {
    linux /vmlinuz root=UUID=$VMDESK_ROOT_UUID ro console=tty0 console=$VMDESK_CONSOLE quiet
    initrd /initrd.img
}
EOF
cat > "$root/tmp/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $VMDESK_ROOT_UUID
set prefix=(\$root)/boot/grub
configfile \$prefix/grub.cfg
EOF
# grub-mkimage, not grub-mkstandalone: no memdisk (a tar with the build's times), so the
# same modules give the same file.
chroot "$root" grub-mkimage -O "$VMDESK_GRUB_TARGET" -o /tmp/boot.efi -c /tmp/early.cfg \
    -p /boot/grub part_gpt fat ext2 normal configfile search search_fs_uuid linux gzio \
    echo test all_video
mv "$root/tmp/boot.efi" "$VMDESK_OUT/boot.efi"
rm "$root/tmp/early.cfg"

chroot "$root" dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' \
    | sort > "$VMDESK_OUT/packages.tsv"
ls "$root/boot" > "$VMDESK_OUT/boot.txt"

# Reproducible times: what the build made (maintainer scripts, caches, this script) gets
# SOURCE_DATE_EPOCH; files from the packages keep theirs, which the byte code made from
# them records. Font caches record their directories' times: made again after the clamp.
# /dev, /proc, /sys and /run are mounted from the host meanwhile: left alone.
clamp() {
    find "$root" -xdev \( -path "$root/dev" -o -path "$root/proc" -o -path "$root/sys" \
        -o -path "$root/run" \) -prune -o -newermt "@$VMDESK_BUILD_START" \
        -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}
clamp
chroot "$root" fc-cache -s -f
clamp
