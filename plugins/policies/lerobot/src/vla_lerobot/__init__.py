"""vla-lerobot: serve and train LeRobot policies with vla. Light to import: no torch here."""
