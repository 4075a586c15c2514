"""vla-cmaes: CMA-ES over a policy's parameters, driven by rewarder scores (an online trainer).

Importing this package is light; ``cma`` loads when a trainer is built.
"""
