"""``hopnhat plan / apply / destroy``: ``model`` (the plan's data), ``vcenters`` (selection
and reading every vCenter), ``plan`` (pure), ``preflight`` (capacity, fit, addresses),
``apply`` and ``destroy``."""
