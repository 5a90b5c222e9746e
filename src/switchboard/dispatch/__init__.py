"""Dispatch (seed §6): choose a node, reserve a slot, assign, and answer in order.

Reads only the runtime snapshot and the session domain; never the management registry.
"""
