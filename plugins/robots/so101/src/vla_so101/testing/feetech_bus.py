"""A chain of Feetech STS3215 servos emulated behind a pseudo-terminal, for tests without an arm.

The host side opens ``FakeFeetechBus.port`` (a /dev/pts/N path) exactly as it would open
/dev/ttyACM0, so LeRobot's ``FeetechMotorsBus`` and the Feetech SDK (``scservo_sdk``) run
unchanged: their packets, checksums, timeouts and unit conversions are the real ones.

What is emulated, from Feetech's STS/SMS protocol and memory table:
- packets ``FF FF id len instruction params checksum`` and status replies
  ``FF FF id len error params checksum``, checksum = ~(sum of id..last param) & 0xFF;
- PING, READ, WRITE, REG_WRITE/ACTION, SYNC_READ (0x82) and SYNC_WRITE (0x83); the broadcast id
  0xFE gets no reply except from PING and SYNC_READ, as on the real bus;
- the control table addresses LeRobot uses (model number 777 at 3, ID at 5, baud index at 6,
  position limits at 9/11, Homing_Offset at 31 in sign-magnitude with bit 11, Torque_Enable at
  40, Goal_Position at 42, Lock at 55, Present_Position at 56 ...);
- Present_Position = actual encoder position - Homing_Offset (mod 4096), Goal_Position clamped to
  the position limits, a servo answers only at the baud rate it is set to;
- motion: with torque on, a servo moves toward its goal at ``speed`` ticks per second
  (``None``: it arrives at once); with torque off it stays where ``move_by_hand`` puts it.

Not emulated: load, current, temperature changes, compliance, overload errors, EEPROM
persistence across power cycles, timing of the real UART.

The servos run in a child process (``python -m vla_so101.testing.feetech_bus``) with real-time
scheduling when allowed: a real servo answers within microseconds and the SDK gives up after
about 50 ms, which a thread sharing the test's GIL on a loaded machine cannot promise. The
test drives the servos (moves them by hand, reads their registers) over a JSON-lines pipe.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
import tty

import attrs

BROADCAST_ID = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_REG_WRITE, INST_ACTION = 1, 2, 3, 4, 5
INST_SYNC_READ, INST_SYNC_WRITE = 0x82, 0x83

STS3215_MODEL_NUMBER = 777
RESOLUTION = 4096

# addresses (STS/SMS series memory table)
FIRMWARE_MAJOR, FIRMWARE_MINOR, MODEL_NUMBER, ID, BAUD_RATE = 0, 1, 3, 5, 6
RETURN_DELAY, MIN_LIMIT, MAX_LIMIT = 7, 9, 11
HOMING_OFFSET, TORQUE_ENABLE, GOAL_POSITION, LOCK = 31, 40, 42, 55
PRESENT_POSITION, PRESENT_VELOCITY, PRESENT_VOLTAGE, PRESENT_TEMPERATURE, MOVING = 56, 58, 62, 63, 66
READ_ONLY = set(range(0, 5)) | set(range(56, 71))

BAUD_INDEX = {0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 57_600, 6: 38_400, 7: 19_200}
_TERMIOS_SPEEDS = {
    getattr(termios, f"B{rate}"): rate for rate in BAUD_INDEX.values() if hasattr(termios, f"B{rate}")
}


def checksum(body: bytes | list[int]) -> int:
    return ~sum(body) & 0xFF


def status_packet(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    body = bytes([servo_id, len(params) + 2, error]) + bytes(params)
    return b"\xff\xff" + body + bytes([checksum(body)])


def decode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = value & ((1 << sign_bit) - 1)
    return -magnitude if (value >> sign_bit) & 1 else magnitude


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    return ((1 << sign_bit) if value < 0 else 0) | min(abs(value), (1 << sign_bit) - 1)


@attrs.define
class FakeServo:
    """One STS3215: its memory table and the shaft's actual encoder position."""

    servo_id: int
    actual: float = 2048.0  # encoder ticks, 0..4095, before the homing offset
    speed: float | None = None  # ticks per second toward the goal; None: instant
    memory: bytearray = attrs.field(factory=lambda: bytearray(256))
    target: float | None = None
    last_update: float = attrs.field(factory=time.monotonic)

    def __attrs_post_init__(self):
        m = self.memory
        m[FIRMWARE_MAJOR], m[FIRMWARE_MINOR] = 3, 10
        m[MODEL_NUMBER : MODEL_NUMBER + 2] = STS3215_MODEL_NUMBER.to_bytes(2, "little")
        m[ID] = self.servo_id
        m[BAUD_RATE] = 0
        m[RETURN_DELAY] = 250
        self._set_word(MIN_LIMIT, 0)
        self._set_word(MAX_LIMIT, RESOLUTION - 1)
        m[PRESENT_VOLTAGE] = 120  # 12.0 V
        m[PRESENT_TEMPERATURE] = 30
        self._set_word(GOAL_POSITION, int(round(self.actual)))
        self._refresh()

    # ---- registers
    def _word(self, addr: int) -> int:
        return int.from_bytes(self.memory[addr : addr + 2], "little")

    def _set_word(self, addr: int, value: int) -> None:
        self.memory[addr : addr + 2] = int(value).to_bytes(2, "little")

    @property
    def homing_offset(self) -> int:
        return decode_sign_magnitude(self._word(HOMING_OFFSET), 11)

    @property
    def torque(self) -> bool:
        return bool(self.memory[TORQUE_ENABLE])

    @property
    def present(self) -> int:
        """Present_Position as the servo reports it."""
        return int(round(self.actual - self.homing_offset)) % RESOLUTION

    @property
    def baudrate(self) -> int:
        return BAUD_INDEX.get(self.memory[BAUD_RATE], 1_000_000)

    def _step(self) -> None:
        now = time.monotonic()
        dt, self.last_update = now - self.last_update, now
        if not self.torque or self.target is None:
            return
        error = self.target - self.actual
        if self.speed is None or abs(error) <= self.speed * dt:
            self.actual = self.target
        else:
            self.actual += self.speed * dt * (1 if error > 0 else -1)

    def _refresh(self) -> None:
        self._step()
        self._set_word(PRESENT_POSITION, encode_sign_magnitude(self.present, 15))
        moving = self.torque and self.target is not None and abs(self.target - self.actual) > 0.5
        self.memory[MOVING] = int(moving)

    def read(self, addr: int, length: int) -> bytes:
        self._refresh()
        return bytes(self.memory[addr : addr + length])

    def write(self, addr: int, data: bytes) -> None:
        self._step()
        for i, byte in enumerate(data):
            if addr + i not in READ_ONLY:
                self.memory[addr + i] = byte
        touched = range(addr, addr + len(data))
        if GOAL_POSITION in touched or GOAL_POSITION + 1 in touched:
            self._retarget()
        if TORQUE_ENABLE in touched:
            if self.torque:
                self._retarget()
            else:
                self.target = None
        if ID in touched:
            self.servo_id = self.memory[ID]

    def _retarget(self) -> None:
        if not self.torque:
            return
        goal = decode_sign_magnitude(self._word(GOAL_POSITION), 15)
        lo, hi = self._word(MIN_LIMIT), self._word(MAX_LIMIT)
        if not (lo == 0 and hi == 0):  # 0/0 means no limits (multi-turn), as on the servo
            goal = min(max(goal, lo), hi)
        self.target = float((goal + self.homing_offset) % RESOLUTION)

    def move_by_hand(self, ticks: float) -> None:
        """Turn the shaft to ``ticks`` (encoder units) as a person would with torque off."""
        self._step()
        self.actual = float(ticks) % RESOLUTION
        if self.torque:
            self._retarget()


class ServoChain:
    """The servos on one bus and the protocol they speak (runs inside the bus process)."""

    def __init__(self, servos: list[FakeServo], host_baudrate=lambda: None):
        self.servos = servos
        self.host_baudrate = host_baudrate
        self.instructions: dict[int, int] = {}  # instruction -> count, for tests to see what the host used
        self._pending: dict[int, tuple[int, bytes]] = {}  # REG_WRITE waiting for ACTION

    @staticmethod
    def take_packet(buffer: bytearray) -> bytes | None:
        """Pop the next well-formed instruction packet; drop garbage and bad checksums."""
        while True:
            start = buffer.find(b"\xff\xff")
            if start < 0:
                del buffer[: max(0, len(buffer) - 1)]
                return None
            del buffer[:start]
            if len(buffer) < 4:
                return None
            length = buffer[3]
            total = length + 4
            if len(buffer) < total:
                return None
            packet = bytes(buffer[:total])
            if packet[-1] != checksum(packet[2:-1]) or length < 2:
                del buffer[:2]
                continue
            del buffer[:total]
            return packet

    def _listening(self) -> list[FakeServo]:
        """Servos whose baud rate matches the host's; the others hear only noise."""
        host = self.host_baudrate()
        return [s for s in self.servos if host is None or s.baudrate == host]

    def handle(self, packet: bytes) -> bytes:
        servo_id, instruction, params = packet[2], packet[4], packet[5:-1]
        self.instructions[instruction] = self.instructions.get(instruction, 0) + 1
        servos = self._listening()
        targets = servos if servo_id == BROADCAST_ID else [s for s in servos if s.servo_id == servo_id]
        out = bytearray()
        if instruction == INST_PING:
            for servo in targets:
                out += status_packet(servo.servo_id)
        elif instruction == INST_READ and servo_id != BROADCAST_ID:
            addr, length = params[0], params[1]
            for servo in targets:
                out += status_packet(servo.servo_id, params=servo.read(addr, length))
        elif instruction in (INST_WRITE, INST_REG_WRITE):
            addr, data = params[0], bytes(params[1:])
            for servo in targets:
                old_id = servo.servo_id
                if instruction == INST_WRITE:
                    servo.write(addr, data)
                else:
                    self._pending[old_id] = (addr, data)
                if servo_id != BROADCAST_ID:
                    # the reply comes from the id the packet addressed (the servo's old id)
                    out += status_packet(old_id)
        elif instruction == INST_ACTION:
            for servo in targets:
                if servo.servo_id in self._pending:
                    servo.write(*self._pending.pop(servo.servo_id))
        elif instruction == INST_SYNC_READ:
            addr, length, ids = params[0], params[1], list(params[2:])
            by_id = {s.servo_id: s for s in servos}
            for sid in ids:
                if sid in by_id:
                    out += status_packet(sid, params=by_id[sid].read(addr, length))
        elif instruction == INST_SYNC_WRITE:
            addr, length = params[0], params[1]
            by_id = {s.servo_id: s for s in servos}
            body = params[2:]
            for i in range(0, len(body) - length, length + 1):
                sid, data = body[i], bytes(body[i + 1 : i + 1 + length])
                if sid in by_id:
                    by_id[sid].write(addr, data)
        return bytes(out)


def _servo_state(servo: FakeServo) -> dict:
    servo._refresh()
    return {
        "servo_id": servo.servo_id, "actual": servo.actual, "target": servo.target, "torque": servo.torque,
        "homing_offset": servo.homing_offset, "baudrate": servo.baudrate, "memory": servo.memory.hex(),
    }


def _new_servo(spec: dict) -> FakeServo:
    servo = FakeServo(int(spec.get("servo_id", 1)), actual=float(spec.get("actual", 2048)), speed=spec.get("speed"))
    servo.memory[BAUD_RATE] = int(spec.get("baud_index", 0))
    return servo


def serve(control_in, control_out, specs: list[dict]) -> None:
    """The bus process: answer packets on a fresh pty, and the test's commands on a pipe."""
    try:  # answer the host in time even when the machine is busy (needs CAP_SYS_NICE, e.g. root)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (AttributeError, OSError):
        pass
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)  # no echo, no line editing: a serial line
    # keep slave_fd open: the host closes and reopens the port when it changes baud rate

    def host_baudrate():
        return _TERMIOS_SPEEDS.get(termios.tcgetattr(slave_fd)[4])

    chain = ServoChain([_new_servo(s) for s in specs], host_baudrate)
    control_out.write(json.dumps({"port": os.ttyname(slave_fd)}) + "\n")
    control_out.flush()
    buffer = bytearray()
    pending = b""
    while True:
        ready, _, _ = select.select([master_fd, control_in], [], [], 1.0)
        if master_fd in ready:
            try:
                buffer.extend(os.read(master_fd, 4096))
            except OSError:
                pass
            while (packet := chain.take_packet(buffer)) is not None:
                reply = chain.handle(packet)
                if reply:
                    os.write(master_fd, reply)
        if control_in in ready:
            data = os.read(control_in.fileno(), 65536)
            if not data:
                return  # the test process is gone
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                op = request["op"]
                if op == "stop":
                    return
                try:
                    result = _command(chain, op, request)
                    answer = {"ok": True, "result": result}
                except Exception as exc:  # reported to the test, which raises it
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                control_out.write(json.dumps(answer) + "\n")
                control_out.flush()


def _command(chain: ServoChain, op: str, request: dict):
    if op == "state":
        return {"servos": [_servo_state(s) for s in chain.servos], "instructions": chain.instructions}
    servo = chain.servos[request["index"]] if "index" in request else None
    if op == "move":
        servo.move_by_hand(request["ticks"])
    elif op == "poke":
        data = bytes.fromhex(request["data"])
        servo.memory[request["addr"] : request["addr"] + len(data)] = data
    elif op == "replace":
        removed = [_servo_state(s) for s in chain.servos]
        chain.servos = [_new_servo(spec) for spec in request["servos"]]
        return removed
    else:
        raise ValueError(f"unknown command {op!r}")
    return None


class ServoView:
    """The test's view of one servo in the bus process (fetched fresh on every access)."""

    def __init__(self, bus: FakeFeetechBus, index: int):
        self._bus, self._index = bus, index

    def _state(self) -> dict:
        return self._bus._call("state")["servos"][self._index]

    def __getattr__(self, name):
        if name in ("servo_id", "actual", "target", "torque", "homing_offset", "baudrate"):
            return self._state()[name]
        raise AttributeError(name)

    def memory(self) -> bytes:
        return bytes.fromhex(self._state()["memory"])

    def word(self, addr: int) -> int:
        return int.from_bytes(self.memory()[addr : addr + 2], "little")

    def move_by_hand(self, ticks: float) -> None:
        """Turn the shaft to ``ticks`` (encoder units) as a person would with torque off."""
        self._bus._call("move", index=self._index, ticks=ticks)

    def poke(self, addr: int, data: bytes) -> None:
        """Set memory bytes directly (no side effects), e.g. a stale goal left from a previous run."""
        self._bus._call("poke", index=self._index, addr=addr, data=bytes(data).hex())


class FakeFeetechBus:
    """Servos on a pty. ``with FakeFeetechBus() as bus: FeetechMotorsBus(port=bus.port, ...)``.

    ``ids`` are the servo ids on the bus (factory default of a new STS3215 is id 1 at
    1 Mbaud); ``positions`` their shaft positions in ticks; ``speed`` ticks per second.
    """

    def __init__(self, ids=(1, 2, 3, 4, 5, 6), positions: dict[int, float] | None = None, speed: float | None = None):
        positions = positions or {}
        self._specs = [{"servo_id": i, "actual": float(positions.get(i, 2048)), "speed": speed} for i in ids]
        self._proc: subprocess.Popen | None = None
        self.port = ""

    def start(self) -> FakeFeetechBus:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "vla_so101.testing.feetech_bus", json.dumps(self._specs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake Feetech bus process did not start")
        self.port = json.loads(line)["port"]
        return self

    def _call(self, op: str, **args):
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("the fake Feetech bus is not running")
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        answer = json.loads(self._proc.stdout.readline())
        if not answer["ok"]:
            raise RuntimeError(f"fake bus: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.stdin.write(json.dumps({"op": "stop"}) + "\n")
                proc.stdin.flush()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def __enter__(self) -> FakeFeetechBus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what tests look at
    @property
    def servos(self) -> list[ServoView]:
        return [ServoView(self, i) for i in range(len(self._call("state")["servos"]))]

    def servo(self, servo_id: int) -> ServoView:
        for i, state in enumerate(self._call("state")["servos"]):
            if state["servo_id"] == servo_id:
                return ServoView(self, i)
        raise KeyError(f"no servo with id {servo_id} on the fake bus")

    @property
    def instructions(self) -> dict[int, int]:
        """How many packets of each instruction the servos received."""
        return {int(k): v for k, v in self._call("state")["instructions"].items()}

    def replace_servos(self, servos: list[dict]) -> list[dict]:
        """Unplug every servo and plug in new ones (``{"servo_id", "actual", "baud_index"}``).

        Returns the unplugged servos' final state (``servo_id``, ``baudrate``, ``memory`` hex ...).
        """
        return self._call("replace", servos=servos)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout, json.loads(sys.argv[1]))
