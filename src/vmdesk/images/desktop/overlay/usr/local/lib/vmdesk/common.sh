# Shared by VM-Desk's boot-time scripts in the desktop image.

# The VM's user: the first ordinary account, which cloud-init made from the seed (or its
# default user when the VM has no seed). Empty when there is none.
desktop_user() {
    getent passwd | awk -F: '$3 >= 1000 && $3 < 60000 { print $3, $1 }' | sort -n |
        awk 'NR == 1 { print $2 }'
}

uptime_seconds() {
    read -r up _ < /proc/uptime
    echo "$up"
}

# A line on the console, alone on its line: the host matches markers at a line start.
# /dev/console is the serial port, the last console= on the kernel command line.
say_console() {
    printf '\n%s\n' "$*" > /dev/console
}
