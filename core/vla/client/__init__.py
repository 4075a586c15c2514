"""The robot-side client of `vla run`: action queue and merge modes, safety layer, watchdog, tick log.

The pieces, each in its own module:
- ``queue``: the plan of joint targets by control tick, and how a new chunk merges into it;
- ``safety``: limits every command before it reaches the arm and rejects bad chunks;
- ``controller``: one control tick at a time (pop, check, act, decide when to ask for more),
  holding the arm when there is nothing safe and timely to send;
- ``worker``: the network side, an asyncio thread, so a tick never waits for the policy;
- ``simlink`` and ``clock``: the same loop on simulated time (tests, ``bench/async_control.py``);
- ``session``: episodes at the control rate, signals; ``recording``: dataset writes off the
  control thread; ``ticklog``: the JSONL record; ``report``: `vla report`;
- ``setup``: robot, safety limits and settings from the lab config and the robot's description;
- ``runner``: one arm's whole session (setup, connection, episodes, recording, hooks, summary,
  exit codes), shared by `vla run`, `vla eval`, `vla learn` and `vla fleet run`; ``lockstep``:
  a real server on simulated control time; ``summary``: the episode table; ``cli``: `vla run`
  and the options every session command shares.

Importing this package is light: nothing loads until a module is used.
"""
