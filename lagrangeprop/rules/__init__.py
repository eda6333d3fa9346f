"""The op registry: one entry per op with all of its rules, one module per family."""
