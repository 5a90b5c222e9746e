"""Rooms (lingua-parity §5): who is in which room, pure values and bookkeeping, no I/O."""
