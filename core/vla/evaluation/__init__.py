"""`vla eval`: seeded episodes per task on an episodic robot against a policy server, scored as success@K."""
