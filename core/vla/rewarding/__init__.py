"""The rewarder service (`vla serve-rewarder`), its client, and calibration against labelled clips.

Importing this package is cheap: numpy and the standard library only. Image decoding
(Pillow), plotting (matplotlib) and the rewarders themselves load when first used.
"""
