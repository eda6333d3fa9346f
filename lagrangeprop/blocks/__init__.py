"""A cyclic block: residual, linearization, assembly, elimination, Newton, the method policy."""
