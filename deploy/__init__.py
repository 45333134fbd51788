"""gemma4-serve's deployment tooling: serving profiles, fit planner, launcher, checkpoint and bench tools."""
