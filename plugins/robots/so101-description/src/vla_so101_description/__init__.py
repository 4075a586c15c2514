"""The SO-101 as vla sees it. Light: the entry point imports this package.

The numbers are in ``constants``; the ``RobotDescription`` built from them (which imports
numpy) is ``vla_so101_description.description:SO101``.
"""
