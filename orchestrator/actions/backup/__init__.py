"""``hopnhat backup``: ``run`` (the hosts' own job over SSH), ``status`` (status files and
repositories against the RPO), ``gate`` (apply and destroy refuse without a fresh
snapshot)."""
