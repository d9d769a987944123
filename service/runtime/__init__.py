"""``tagserve serve``: the entry point, the HTTP-worker supervisor and the operating-system
helpers (CPU count under cgroup quotas, ``SO_REUSEPORT`` sockets, the metrics directory)."""
