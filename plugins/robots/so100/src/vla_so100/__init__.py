"""The SO-100 (TheRobotStudio SO-ARM100) follower arm. Light: the entry point imports this package."""
