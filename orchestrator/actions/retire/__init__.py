"""``hopnhat retire``: close a system (or, after a migration, its source VMs) and keep its
records."""
