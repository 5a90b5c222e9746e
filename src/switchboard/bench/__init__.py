"""Benchmarks E1–E3 (issue 4): ``switchboard bench`` and ``switchboard replay``.

Modules: ``scenarios`` (what each run does), ``orchestrate`` (server, Redis and load-generator
processes per run), ``loadgen``/``fakes``/``wsclient``/``storm`` (the load generator),
``serverproc`` (the scheduler with an exact-latency tap), ``stats``, ``report``, ``plots``,
``trace``/``record``/``consistency``/``replay``/``tracegen`` (E3), ``cli`` (command bodies).
Nothing here is imported by the scheduler unless ``--record`` is set.
"""
