"""``hopnhat verify``: ``run`` (every repository from the control host), ``checks`` and
``attacks`` (pure judgements), ``notify`` (who is told)."""
