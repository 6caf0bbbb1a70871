"""The names the guests' agents look for on their virtio-serial (or virtio console) ports:
whichever engine makes the port names it so."""

GUEST_AGENT_PORT = "org.qemu.guest_agent.0"  # qemu-guest-agent
SPICE_AGENT_PORT = "com.redhat.spice.0"  # spice-vdagent
