"""What the tools share: process launchers, the Prometheus reader, the fake node.

The tools are ``switchboard bench`` (``bench/``, with ``legacy/``, the model of the old
global-lock design it measures against), ``switchboard chaos`` (``chaos/``), ``switchboard
demo`` (``demo/``) and the test suite.  Each used to carry its own copy of these parts; this
package is their one home:

- :mod:`switchboard.tools.procs`: ``switchboard serve`` / ``switchboard node`` /
  ``redis-server`` child processes, a free loopback port, the environment a child gets;
- :mod:`switchboard.tools.prom`: ``/metrics`` text read with ``prometheus_client.parser``,
  and ``histogram_quantile`` as PromQL computes it;
- :mod:`switchboard.tools.fakenode`: the node side of contract §1 as every fake node speaks it.

The product core (``protocol``, ``management``, ``runtime``, ``sessions``, ``dispatch``,
``store``, ``server``, ``agent``, ``client``) never imports this package
(``tests/unit/test_layers.py`` checks every import, lazy ones included); a tool plugs into
the server through the hooks ``server.runner`` offers (``ServeHooks``, as
``bench/serverproc.py``'s latency tap does).

Why the tools stay in the wheel (style guide point 13, "tools beside the product"; also
docs/architecture.md "Tools beside the product"):
``switchboard bench``, ``switchboard chaos`` and ``switchboard demo`` are documented commands
of the one ``switchboard`` executable (README, docs/benchmarks.md, docs/reliability.md), and an
operator checking a deployment runs them against the installed scheduler, so they ship with it.
"Beside" is kept by the import rule above, not by a second distribution: a server loads no
tool code, and what only the tools need (matplotlib, for ``bench`` plots) is the ``[bench]``
extra, imported only when plotting, so a plain ``pip install switchboard`` serves without it.
Moving them into their own distribution would split one CLI across two packages for no gain to
the server, whose import graph is the thing the rule protects.  (Not yet true everywhere:
``server/scheduler.py`` still imports ``bench.record`` for ``--record`` and ``legacy`` for
``--design global_lock``, lazily; moving both behind the runner's hook is separate work, after
which the boundary test should cover ``bench``, ``chaos``, ``demo`` and ``legacy`` too.)
"""
