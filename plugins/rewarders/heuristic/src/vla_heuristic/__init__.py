"""vla-heuristic: score frames against a goal with HSV colour masks and per-task rules.

Importing this package stays light; OpenCV loads when a rewarder is built.
"""
