"""The runtime domain (seed §4): an immutable snapshot that dispatch reads without a lock."""
