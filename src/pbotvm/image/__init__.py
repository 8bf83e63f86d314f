"""Building the guest image: a Debian root filesystem with guest-server, a kernel and a small
initramfs for direct ``-kernel`` boot, and a qcow2 disk (qcow2 so QEMU can hold snapshots)."""
