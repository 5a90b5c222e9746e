"""The session domain (seed §5): per-session decision state behind one small lock per session.

Never imports the management registry: dispatch reads only the runtime snapshot (seed §7).
"""
