"""From a graph to an execution plan: validation, SCC condensation, topological order."""
