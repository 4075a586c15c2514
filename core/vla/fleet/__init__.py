"""Several arms at once: `vla fleet run` (one process per arm) and `vla dashboard` (a live web page).

The arm processes and the dashboard never talk to each other directly. Each arm process writes
its state into its own folder of the fleet run (``arms/<label>/status.json`` and the latest
camera frame, ``frame.jpg``), replacing the file whole each time; the supervisor and the
dashboard read those files. So a crashed arm leaves its last state behind, the dashboard can be
started, stopped or pointed at an old run by itself, and nothing a child does can block the
others.
"""
