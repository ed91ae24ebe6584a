"""Actions: one module per verb. Each computes a plan (pure data: what would change and
why) from the estate and the facts, then executes it through the adapters."""
