"""``tagserve serve``: the entry point, the HTTP-worker supervisor and the operating-system
helpers (CPU count under cgroup quotas, the shared listening socket, the run folder)."""
