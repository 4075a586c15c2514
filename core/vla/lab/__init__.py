"""Judging a lab's progress from what vla recorded: the plan's gates (`vla gates`) and the
evaluation board over time (`vla board`)."""
