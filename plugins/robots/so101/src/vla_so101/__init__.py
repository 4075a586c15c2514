"""vla-so101: the Hugging Face SO-101 follower arm through LeRobot's so101_follower driver.

This package's modules import lerobot only inside the functions that talk to the arm.
"""

__version__ = "0.1.0"
