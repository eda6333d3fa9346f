"""Building programs: traced values, the Program builder, JSON."""
