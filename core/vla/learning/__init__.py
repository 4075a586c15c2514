"""Learning without demonstrations: the online-trainer contract and the `vla learn` loop.

``contract`` is what an online trainer plugin implements; ``checkpoint`` writes its state
atomically; the loop (``loop``) runs candidates on arm processes (``arms``) that each drive the
same session runner as `vla run`, scores their episodes with a rewarder service, and hands
the learner nothing but the rewarder's replies.
"""
