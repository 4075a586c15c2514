"""Subprocess for the kill tests: record finished episodes, then be killed at a chosen point.

    python record_and_wait.py ROOT RUN_ID EPISODES MODE

MODE ``mid-episode``: after EPISODES finished episodes, start one more, print
``IN-EPISODE`` once a few frames are in, and keep adding a frame every 50 ms until killed.
MODE ``in-save``: the episode after EPISODES finished ones is killed (SIGKILL, by the process
itself) right after LeRobot's ``save_episode`` returns and before ``finalize`` writes the
parquet footers: the worst moment for a kill.
"""

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

FRAMES = 8  # per finished episode; episode k holds ticks k*FRAMES .. (k+1)*FRAMES-1


def main() -> None:
    root, run_id, episodes, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    spec = importlib.util.spec_from_file_location("pattern_arm", Path(__file__).with_name("pattern_arm.py"))
    pattern_arm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pattern_arm)
    from vla.recording import EpisodeRecorder

    if mode == "in-save":
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        original = LeRobotDataset.save_episode

        def save_then_die(self, *args, **kwargs):
            index = self.meta.total_episodes
            original(self, *args, **kwargs)
            if index == episodes:
                os.kill(os.getpid(), signal.SIGKILL)

        LeRobotDataset.save_episode = save_then_die

    arm = pattern_arm.PatternArm()
    recorder = EpisodeRecorder(root, arm, "pick_place", "arm01", run_id=run_id)
    for _ in range(episodes + 1):
        recorder.start_episode("put the red cube in the blue bowl")
        for _ in range(FRAMES):
            obs = arm.observe()
            action = arm.action(arm.tick)
            recorder.add_frame(obs, action)
            arm.act(action)
        if mode == "mid-episode" and len(recorder.saved_episodes) == episodes:
            print("IN-EPISODE", flush=True)
            while True:
                obs = arm.observe()
                action = arm.action(arm.tick)
                recorder.add_frame(obs, action)
                arm.act(action)
                time.sleep(0.05)
        recorder.end_episode()
    print("NOT KILLED", flush=True)


if __name__ == "__main__":
    main()
