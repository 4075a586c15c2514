"""Training length: the epochs the checkpoint was trained for, from its own training config.

Epochs = steps x batch size / frames of the dataset (the training loop draws ``batch size``
frames per step, so that many frames over the dataset's frame count is how many times it saw
each frame). Small datasets overfit by epochs, not by steps.

The warning above about 7 epochs for datasets under 500 episodes is a practitioner's figure,
not a published result: seed 004 (an SO-101 lab's ACT/SmolVLA write-up, "Problem 3:
Overfitting") cites "3-7 epochs typical" under 500 episodes, found 50,000 steps x 32 / 100,832
frames = 15.9 epochs overfit (training loss 0.014, poor generalisation) and retrained at 6.35
epochs. It is a warning, not a failure, because the right number depends on the policy and
the augmentation; the report says the figure and where it comes from.
"""

from __future__ import annotations

from vla.matching.inputs import MatchInputs
from vla.matching.results import PASS, SKIP, WARN, Check

MAX_EPOCHS = 7.0
SMALL_DATASET_EPISODES = 500
CITATION = ("seed 004 (SO-101 ACT/SmolVLA lab write-up, 'Problem 3: Overfitting'): 3-7 epochs typical for "
            "datasets under 500 episodes; 15.9 epochs overfit, 6.35 worked")


def check_training_length(inputs: MatchInputs) -> Check:
    ckpt, ds = inputs.checkpoint, inputs.dataset
    if ckpt is None:
        return Check("training_length", SKIP, "no --checkpoint: the training length is unknown", {})
    run = ckpt.training
    if run is None:
        return Check("training_length", SKIP, f"{ckpt.path} holds no training config (vla_train.json or train_config.json)",
                     {"checkpoint": ckpt.path})
    frames, episodes = ds.total_frames, ds.total_episodes
    epochs = run.steps * run.batch_size / frames
    numbers = {"steps": run.steps, "batch_size": run.batch_size, "dataset_frames": frames, "dataset_episodes": episodes,
               "epochs": epochs, "max_epochs": MAX_EPOCHS, "small_dataset_episodes": SMALL_DATASET_EPISODES,
               "trained_on_frames": run.dataset_frames, "trained_on": run.dataset, "source": run.source,
               "citation": CITATION}
    formula = f"{run.steps} steps x {run.batch_size} / {frames} frames = {epochs:.2f} epochs"
    notes = []
    status = PASS
    if run.dataset_frames is not None and run.dataset_frames != frames:
        status = WARN
        notes.append(f"the checkpoint was trained on {run.dataset_frames} frames, this dataset has {frames}: "
                     "is it the same dataset?")
    if episodes < SMALL_DATASET_EPISODES and epochs > MAX_EPOCHS:
        status = WARN
        notes.append(f"above {MAX_EPOCHS:g} epochs for a dataset of {episodes} episodes (< {SMALL_DATASET_EPISODES}) "
                     f"risks overfitting; source: {CITATION}")
    return Check("training_length", status, formula + ("; " + "; ".join(notes) if notes else ""), numbers)
