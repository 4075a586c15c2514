"""vla-openvla: OpenVLA-7B as a vla policy backend. Light to import: no torch here."""
