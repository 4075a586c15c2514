"""vla-qwen-vl: a rewarder that asks a vision-language model whether the goal is achieved.

The score is the probability of an affirmative first answer token, renormalised over the
affirmative and negative ones (VQAScore-style): P(yes) / (P(yes) + P(no)). Two backends:
an OpenAI-compatible server (vLLM serving Qwen2.5-VL), or transformers in this process.
"""
