"""Cross-checks: tape replays (autograd, torch), finite differences, the report."""
