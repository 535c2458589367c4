"""What runs unattended: hotplug decisions and the watcher, waiting for devices at boot,
the systemd units shipped in ``data/systemd``.
"""
