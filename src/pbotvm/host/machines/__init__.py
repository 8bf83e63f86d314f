"""The guests and what runs them: the backends (QEMU, libvirt, the PTY stand-in), the lines to
a guest (serial, vsock, heartbeat), each machine's turns and state, reverts, vm-watchdog."""
