"""`vla calibrate camera`: the camera's pose from the arm's own kinematics and a coloured marker."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

EXIT_NOT_SOLVED = 1
EXIT_SETUP = 2
EXIT_STOPPED = 130


@click.group()
def calibrate():
    """Calibrate an arm's cameras (the primitive policy reads the result from the arm's folder)."""


@calibrate.command()
@click.option("--arm", "arm_id", default=None, envvar="ARM_ID", show_envvar=True,
              help="Arm id from vla.yaml's arms: its robot, settings and safety file. The result goes to "
                   "<lab>/arms/ARM/camera-CAMERA.yaml.")
@click.option("--robot", "robot_name", default=None, help="Robot plugin (default: the arm file's robot).")
@click.option("--camera", default="front", show_default=True, help="The camera to calibrate.")
@click.option("--safety", "safety_path", default=None, type=click.Path(dir_okay=False),
              help="Safety limits file (default: the arm's, else the robot description's).")
@click.option("--poses", "n_poses", default=30, show_default=True, type=click.IntRange(6, 500),
              help="Calibration poses to visit.")
@click.option("--min-sightings", default=12, show_default=True, type=click.IntRange(6),
              help="Poses in which the marker must be found; fewer is an error.")
@click.option("--intrinsics", "intrinsics_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="YAML with the camera's K (3x3; width/height if K is for another size), e.g. an earlier "
                   "calibration file. Default: the robot's own (the simulator's), else estimated.")
@click.option("--estimate-intrinsics", is_flag=True, help="Estimate K from the sightings even if the robot knows it.")
@click.option("--marker-offset", nargs=3, type=float, default=None, metavar="X Y Z",
              help="Where the marker's centre is from the tool point, metres in the tool frame (default: on it).")
@click.option("--speed", default=0.6, show_default=True, type=click.FloatRange(0.05, 3.0),
              help="Joint speed of the calibration moves, rad/s (the safety layer's step limit also applies).")
@click.option("--settle", "settle_s", default=None, type=click.FloatRange(0.0, 10.0),
              help="Seconds to wait at each pose before the frame (default: 0.6; 1.0 on a real-time arm).")
@click.option("--clock", type=click.Choice(["auto", "real", "simulated"]), default="auto", show_default=True,
              help="auto: simulated for a robot that simulates itself (reset/success), else real time.")
@click.option("--seed", default=0, show_default=True, help="Seed of the pose draw.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Where to save (default: <lab>/arms/ARM/camera-CAMERA.yaml).")
@click.option("--frames", "frames_dir", default=None, type=click.Path(file_okay=False),
              help="Save every calibration frame here, the marker circled (to see why a pose was rejected).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before moving a real arm.")
@click.pass_context
def camera(ctx, arm_id, robot_name, camera, safety_path, n_poses, min_sightings, intrinsics_path, estimate_intrinsics,
           marker_offset, speed, settle_s, clock, seed, out_path, frames_dir, yes):
    """Find where a camera is, from the arm's own forward kinematics.

    The arm moves the tool point, carrying a magenta marker (on the simulator the robot shows
    one itself; on a real arm, fix a magenta ball of 15-25 mm on the fixed jaw's tip), through
    safe poses made from its description, each command through the same safety layer as
    `vla run`. In every frame the marker is found by colour; cv2.solvePnP then gives the camera
    pose in the arm's base frame. Prints the reprojection error and the pose, and saves the
    calibration; exits 1 when the marker was seen in too few poses, 2 on a setup error.
    """
    from vla.calibration.calibrate import CalibrationStopped, calibrate_camera
    from vla.calibration.camera import calibration_path
    from vla.calibration.procedure import CalibrationRunError, MoveSettings
    from vla.calibration.solver import CalibrationError
    from vla.cli.common import lab_config
    from vla.client.cli import wide_console
    from vla.client.setup import SetupError, build_robot

    err = wide_console(stderr=True)
    out = wide_console()

    def fail(message: str, code: int):
        err.print(f"[red]Error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(code)

    loaded = lab_config(ctx)
    if not arm_id and not out_path:
        fail("pass --arm ARM (the result goes to its folder), or --out FILE with --robot", EXIT_SETUP)
    try:
        target = Path(out_path) if out_path else calibration_path(loaded, arm_id, camera)
    except ValueError as exc:
        fail(str(exc), EXIT_SETUP)
    try:
        setup = build_robot(loaded, robot_name, arm_id, safety_path)
    except SetupError as exc:
        fail(str(exc), EXIT_SETUP)
    robot = setup.robot
    description = setup.description
    cams = getattr(robot, "cameras", {}) or {}
    if camera not in cams:  # before connecting: nothing moves for a calibration that cannot work
        fail(f"arm {arm_id or setup.robot_name} has no camera {camera!r} (its cameras: {', '.join(cams) or 'none'}). "
             f"Calibration needs frames from the camera being calibrated: add it to the arm file's cameras "
             f"(or choose one with --camera)", EXIT_SETUP)
    K = None
    if intrinsics_path:
        try:
            K = _load_intrinsics(intrinsics_path, robot, camera)
        except ValueError as exc:
            fail(str(exc), EXIT_SETUP)

    episodic = callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))
    simulated = clock == "simulated" or (clock == "auto" and episodic)
    from vla.client.clock import RealClock, SimulatedClock

    show = getattr(robot, "show_calibration_marker", None)
    if callable(show):
        show(True)
    elif not yes:
        err.print(f"Fix a magenta marker on the tool point of {arm_id or setup.robot_name}; the arm will move "
                  f"through {n_poses} poses (safety limits: {setup.safety_source}).", highlight=False)
        if sys.stdin.isatty():
            click.confirm("Start?", abort=True, err=True)
    move = MoveSettings(speed=speed, settle_s=settle_s if settle_s is not None else (0.6 if simulated else 1.0))

    on_frame = None
    if frames_dir:
        on_frame = _frame_writer(Path(frames_dir))

    def progress(sighting, total):
        d = sighting.detection
        status = f"marker at ({d.uv[0]:.1f}, {d.uv[1]:.1f}) px" if d.found else f"[yellow]{d.reason}[/]"
        err.print(f"pose {sighting.index + 1:2d}: tool ({', '.join(f'{v:+.3f}' for v in sighting.tool)}) m  {status}"
                  + ("" if sighting.reached else "  [yellow](pose not reached)[/]"), highlight=False)

    err.print(f"[bold]vla calibrate camera[/] {arm_id or setup.robot_name} camera {camera!r}: {n_poses} poses, "
              f"{'simulated' if simulated else 'real'} time, safety limits from {setup.safety_source}", highlight=False)
    import signal
    import threading

    try:
        robot.connect()
    except Exception as exc:  # a driver's own error: no port, no camera device, ...
        fail(f"cannot connect to arm {arm_id or setup.robot_name}: {exc}", EXIT_SETUP)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stopping.set())  # Ctrl-C: hold, do not move home
    try:
        try:
            result = calibrate_camera(
                robot, setup.safety, description, camera, clock=SimulatedClock() if simulated else RealClock(),
                n_poses=n_poses, min_sightings=min_sightings, K=K, move=move, marker_offset=marker_offset,
                seed=seed, estimate_intrinsics=estimate_intrinsics and K is None, on_sighting=progress,
                on_frame=on_frame, stop=stopping.is_set,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
            robot.disconnect()
    except CalibrationStopped as exc:
        fail(str(exc), EXIT_STOPPED)
    except CalibrationRunError as exc:
        fail(str(exc), EXIT_SETUP)
    except CalibrationError as exc:
        fail(str(exc), EXIT_NOT_SOLVED)
    except ValueError as exc:  # e.g. no poses fit the region within the safety limits
        fail(str(exc), EXIT_SETUP)

    calibration = result.calibration
    calibration.save(target)
    _print_result(out, result, target)


def _load_intrinsics(path, robot, camera):
    import numpy as np

    from vla.config import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict) or "K" not in data:
        raise ValueError(f"{path}: K: missing (expected a 3x3 matrix of intrinsics in pixels)")
    try:
        K = np.asarray(data["K"], dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: K: expected a 3x3 matrix of numbers, got {data['K']!r}") from None
    cams = getattr(robot, "cameras", {}) or {}
    if "width" in data and "height" in data and camera in cams:
        h, w = cams[camera][:2]
        sx, sy = w / float(data["width"]), h / float(data["height"])
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def _frame_writer(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)

    def write(sighting, image):
        import cv2

        frame = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        d = sighting.detection
        if d.found:
            cv2.circle(frame, (int(round(d.uv[0])), int(round(d.uv[1]))), 8, (0, 255, 0), 1)
        name = f"pose{sighting.index + 1:02d}-{'found' if d.found else 'rejected'}.png"
        cv2.imwrite(str(folder / name), frame)

    return write


def _print_result(out, result, target) -> None:
    c = result.calibration
    sol = result.solution
    R = c.R_array
    forward = R[2]  # the optical axis in the base frame
    down = math.degrees(math.asin(max(-1.0, min(1.0, -forward[2]))))
    heading = math.degrees(math.atan2(forward[1], forward[0]))
    n_used = len(result.used)
    out.print(f"marker seen in {n_used} of {result.poses} poses; {int(sol.inliers.sum())} fit the solution "
              f"(intrinsics {result.intrinsics})", highlight=False)
    uv = [s.detection.uv for s in result.used]
    span_x = (max(u for u, _ in uv) - min(u for u, _ in uv)) / c.width
    span_y = (max(v for _, v in uv) - min(v for _, v in uv)) / c.height
    out.print(f"the sightings span {100 * span_x:.0f}% of the image width and {100 * span_y:.0f}% of its height"
              + ("  [yellow](narrow: the pose may be poorly determined; widen the region or move the camera)[/]"
                 if min(span_x, span_y) < 0.3 else ""), highlight=False)
    out.print(f"reprojection error: {c.rms_px:.2f} px rms, worst inlier {sol.residuals_px[sol.inliers].max():.2f} px",
              highlight=False)
    pos = c.position
    out.print(f"camera position: x {pos[0]:+.4f}  y {pos[1]:+.4f}  z {pos[2]:+.4f} m (arm base frame)", highlight=False)
    out.print(f"optical axis: heading {heading:+.1f} deg, looking {down:.1f} deg down; "
              f"fx {c.K_array[0, 0]:.1f} px, principal point ({c.K_array[0, 2]:.1f}, {c.K_array[1, 2]:.1f})",
              highlight=False)
    counts = {k: v for k, v in result.safety_counts.items() if v}
    if counts:
        out.print(f"safety layer clamps during the moves: {counts}", highlight=False)
    out.print(f"saved {target}", highlight=False)
