"""One thin module per outside system; the only places that touch them."""
