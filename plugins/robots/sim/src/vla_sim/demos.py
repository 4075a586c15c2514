"""Scripted demonstrations: the expert drives the simulator while a recorder keeps every frame."""

from __future__ import annotations

from collections.abc import Iterable


def record_demonstrations(robot, expert, recorder, task: str, seeds: Iterable[int], on_episode=None) -> int:
    """Record one episode per seed (each ends on success or the time limit); returns the successes.

    ``on_episode(seed, successes)`` is called after each episode, for progress output.
    """
    successes = 0
    for seed in seeds:
        robot.reset(task, seed=seed)
        expert.reset()
        recorder.start_episode(robot.task.goal)
        obs, done = robot.observe(), False
        while not done:
            for action in expert.infer([obs])[0]:
                recorder.add_frame(obs, action)
                robot.act(action)
                obs = robot.observe()
                if robot.success() or robot.timed_out():
                    done = True
                    break
        successes += bool(robot.success())
        recorder.end_episode()
        if on_episode is not None:
            on_episode(seed, successes)
    return successes
