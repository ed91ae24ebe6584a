"""hopnhat: consolidate provincial data centres — provision, configure, verify, drill."""

__version__ = "0.1.0"
