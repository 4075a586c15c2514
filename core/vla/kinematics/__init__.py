"""Pure-numpy kinematics of the arms `vla` drives (used by the safety layer and scripted experts)."""
