#!/bin/sh
# mmdebstrap's essential hook for VM-Desk's desktop image: runs on the host once the
# essential packages are in $1 and before apt installs the rest, so that configuration
# the rest's maintainer scripts read (initramfs-tools' module list above all) is in place.
#   VMDESK_OVERLAY  the image's own files (vmdesk/images/desktop/overlay)
set -eu
root=$1
cp -R --preserve=mode "$VMDESK_OVERLAY/." "$root/"
chmod 0755 "$root"/usr/local/lib/vmdesk/*  # programs, but for the shell library
chmod 0644 "$root"/usr/local/lib/vmdesk/common.sh
