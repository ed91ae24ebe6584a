"""``hopnhat drill``: restore rehearsals. ``plan`` (which systems, which snapshot, which
scratch VMs), ``scratch`` (the scratch VMs and their addresses), ``run`` (the stages),
``checks`` (counts, samples, probes), ``result``, ``evidence`` and ``history`` (what an
auditor reads), ``rehearse`` (a whole site at once)."""
