"""Does the deployment match the training? The checks behind `vla doctor --dataset` and `vla run`'s pre-flight.

A lab loses weeks to mismatches that no error message names (seed 004): a task text that is
not the one trained on, front and wrist cameras swapped, a start pose the data never saw, a
checkpoint trained for too many epochs, chunk settings that make the arm jerk, actions in other
units, a control rate that is not the dataset's. Each check here compares one of these between
a training dataset (and the checkpoint trained on it) and a deployment (an arm, its settings,
and optionally an eval recording), and says pass, warn, fail or skip with the numbers behind it.

- ``dataset``: reading a LeRobot v3 dataset (parquet and video) without lerobot or torch.
- ``checkpoint``: what a checkpoint expects, read by its policy plugin (``PolicySpec.checkpoint_info``)
  or from a policy server's metadata frame.
- ``deployment``: what the arm side will do: task text, cameras, settings, a live observation.
- ``similarity``: the image measure (SSIM) and the camera assignment behind the swap check.
- ``checks``: one function per check; ``run_checks`` runs them all into a ``MatchReport``.
- ``console``, ``html``: the terminal table and the ``--report DIR`` page; ``MatchReport.to_json``
  is the stable ``--json`` output.
- ``preflight``: the session-runner hook behind `vla run --preflight`.

Nothing here is imported by `vla --help`; numpy, pyarrow and PyAV are imported where used.
"""

from vla.matching.results import FAIL, PASS, SKIP, STATUSES, WARN, Check, MatchReport

__all__ = ["FAIL", "PASS", "SKIP", "STATUSES", "WARN", "Check", "MatchReport"]
