"""libvirt engine: VMs on libvirt hosts (local or qemu+ssh://), driven through libvirt-python."""
