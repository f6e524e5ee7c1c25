"""Testing kit: declare snapshots and tasks in code, fixtures, tool-call strategies, fault injection, golden trajectories."""
