"""``switchboard chaos``: fault scenarios against real processes (issue 5, docs/reliability.md).

::

    command.py    the click command: choose scenarios and stores, print the table
    runner.py     one scenario on one store: start, load, break, settle, count
    scenarios.py  the scenarios of issue 5 (what runs, which stores, which flags)
    faults.py     one coroutine per fault: inject episodes while the load runs, then repair
    rig.py        Profile (full / quick sizes and timings) and Rig (the parts of one run)
    procs.py      the real processes (the tools' launcher, awaited): scheduler, agents, redis
    sessions.py   client sessions that file every utterance and answer in the ledger
    slow.py       a slow consumer on a bare socket; storm.py: a connection storm
    ledger.py     pure accounting: lost, duplicated, misordered, stale, recovery time
    report.py     the Markdown table and JSON

Its in-process nodes, which misbehave on cue and count their own concurrency, are the tools'
fake node (``switchboard.tools.fakenode``: ``FakeNode`` and its ``Conduct``).
"""
