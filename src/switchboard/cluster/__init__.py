"""Instances on one Redis as one cluster (docs/scale-out.md): every instance sees every node
(``member.py``) and dispatches to every node, its frames crossing through the owner's inbox
(``relay.py``).  Built only on a shared store; a lone instance on the embedded store has none
of it."""
