"""Flow factories: a build's tasks in order. A factory only assembles the
flow from its arguments (no side effects)."""
