"""The firmware simulator through pyserial on its pty: T codes, dynamics, pacing, modes and every fault."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import serial

from roarm_description import joints
from roarm_driver import protocol as proto
from roarm_driver.firmware_sim import FirmwareSimulator, firmware_fk


@pytest.fixture
def sim():
    s = FirmwareSimulator(boot_text=False, seed=1)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def port(sim):
    p = serial.Serial(sim.port, 115200, timeout=0.05)
    yield p
    p.close()


def send(port, message):
    port.write(proto.encode(message))


def read_messages(port, seconds, splitter=None):
    sp = splitter or proto.LineSplitter()
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out += sp.feed(port.read(max(1, port.in_waiting)))
    return out


def wait_until(predicate, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_port_is_a_real_tty_at_a_stable_link(sim):
    assert os.path.islink(sim.port) and os.isatty(os.open(sim.port, os.O_RDWR | os.O_NOCTTY)) is True


def test_request_reply_reports_urdf_home(sim, port):
    send(port, proto.feedback_request())
    msgs = read_messages(port, 0.2)
    assert len(msgs) == 1 and msgs[0]["T"] == 1051
    fb = proto.parse_feedback(msgs[0])
    assert fb.positions == pytest.approx(joints.HOME_POSITIONS, abs=2e-3)
    x, y, z, tit = firmware_fk(fb.firmware_positions)
    assert fb.xyz_mm == pytest.approx((x, y, z), abs=0.01)
    assert x > 300 and abs(y) < 1e-6  # home: arm stretched forward along +x


def test_t102_moves_with_speed_limit(sim, port):
    target = np.array([1.0, 0.0, math.pi / 2, 0.0, 0.0, 0.0])
    spd = 1000  # steps/s = 1.53 rad/s
    v = spd * 2 * math.pi / 4096
    t0 = time.monotonic()
    send(port, proto.joints_command(target, speed=spd, acceleration=0))
    time.sleep(0.3)
    mid, dt = sim.joints[0], time.monotonic() - t0
    assert 0.6 * v * dt < mid <= v * dt + 0.01, (mid, v * dt)  # speed-limited, minus the command's latency
    assert wait_until(lambda: abs(sim.joints[0] - 1.0) < 1e-3, 2.0)
    assert sim.joints == pytest.approx(target, abs=2e-3)


def test_acceleration_limit_slows_the_start(sim, port):
    a = 10 * 100 * 2 * math.pi / 4096  # acc 10 = 1000 steps/s^2 = 1.53 rad/s^2
    t0 = time.monotonic()
    send(port, proto.joints_command([1.0, 0, math.pi / 2, 0, 0, 0], speed=0, acceleration=10))
    time.sleep(0.2)
    moved, dt = sim.joints[0], time.monotonic() - t0
    # 0.5 a t^2 (~0.03 rad at 0.2 s): full acceleration would have gone ~16x further
    assert 0.0 < moved <= 0.5 * a * dt ** 2 + 0.005, (moved, 0.5 * a * dt ** 2)


def test_firmware_clamps_and_gripper_range(sim, port):
    send(port, proto.joints_command([0, 0, -1.0, 0, 0, 1.5]))  # elbow below the firmware's -0.785
    assert wait_until(lambda: abs(sim.joints[2] + 0.785) < 2e-3)
    fw_g = joints.urdf_to_firmware(sim.joints)[5]
    assert fw_g >= joints.FIRMWARE_GRIPPER_MIN - 1e-6
    send(port, {"T": 106, "cmd": 6.0, "spd": 0, "acc": 0})  # beyond the closed end
    assert wait_until(lambda: abs(joints.urdf_to_firmware(sim.joints)[5] - joints.FIRMWARE_GRIPPER_MAX) < 2e-3)


def test_single_joint_and_degree_commands(sim, port):
    send(port, {"T": 101, "joint": 4, "rad": 0.5, "spd": 0, "acc": 0})
    assert wait_until(lambda: abs(sim.joints[3] - 0.5) < 2e-3)
    send(port, {"T": 122, "b": 10, "s": 0, "e": 90, "t": 0, "r": 0, "h": 180, "spd": 0, "acc": 0})
    assert wait_until(lambda: abs(sim.joints[0] - math.radians(10)) < 2e-3 and abs(sim.joints[3]) < 2e-3)
    send(port, {"T": 121, "joint": 1, "angle": -20, "spd": 0, "acc": 0})
    assert wait_until(lambda: abs(sim.joints[0] - math.radians(-20)) < 2e-3)


def test_streaming_rate_is_paced_by_bytes_not_lines(sim, port):
    sim.set_joints([0.123456, -0.2345678, 1.3456789, 0.456789, -0.56789, 0.6789])  # long numbers, ~190 bytes
    line_len = len(sim.feedback_line())
    send(port, proto.output_mode(2))
    read_messages(port, 0.2)
    sp = proto.LineSplitter()
    t0 = time.monotonic()
    msgs = read_messages(port, 1.5, sp)
    rate = len(msgs) / (time.monotonic() - t0)
    limit = 11520.0 / line_len
    assert 0.85 * limit < rate < 1.05 * limit, (rate, limit, line_len)
    assert sp.counts.skipped <= 1  # at most the tail of the line in flight when this splitter started


def test_lower_baud_gives_proportionally_fewer_lines():
    with FirmwareSimulator(baud=38400, boot_text=False, boot_mode=2) as slow:
        with serial.Serial(slow.port, 38400, timeout=0.05) as p:
            line_len = len(slow.feedback_line())
            read_messages(p, 0.2)
            msgs = read_messages(p, 1.0)
            assert len(msgs) == pytest.approx(3840.0 / line_len, rel=0.2)


def test_mode_1_echoes_commands_and_mode_0_is_silent(sim, port):
    send(port, proto.output_mode(1))
    send(port, proto.joints_command(joints.HOME_POSITIONS))
    msgs = read_messages(port, 0.3)
    assert [m["T"] for m in msgs] == [102]  # the 605 itself arrived in mode 0
    send(port, proto.output_mode(0))
    read_messages(port, 0.1)
    send(port, proto.torque(True))
    assert read_messages(port, 0.2) == []


def test_torque_off_hand_guiding_and_safe_re_enable(sim, port):
    send(port, proto.torque(False))
    assert wait_until(lambda: not sim.torque_on)
    guided = joints.HOME_POSITIONS + np.array([0.4, 0.2, 0, 0, 0, 0])
    sim.guide(guided)
    send(port, proto.feedback_request())
    fb = proto.parse_feedback(read_messages(port, 0.2)[0])
    assert fb.positions == pytest.approx(guided, abs=2e-3) and not np.any(fb.loads)
    send(port, proto.torque(True))
    time.sleep(0.3)
    assert sim.joints == pytest.approx(guided, abs=2e-3)  # re-enabled where the hand left it


def test_timed_torque_off_blocks_then_recovers():
    with FirmwareSimulator(boot_text=False, timed_torque_off_s=0.4) as s, serial.Serial(s.port, timeout=0.05) as p:
        send(p, proto.timed_torque_off())
        assert wait_until(lambda: not s.torque_on, 0.5)
        send(p, proto.feedback_request())
        assert read_messages(p, 0.2) == []  # blocking: the firmware is not reading
        assert wait_until(lambda: s.torque_on, 1.0)
        assert [m["T"] for m in read_messages(p, 0.3)] == [1051]  # the queued request is served afterwards


def test_home_command_is_blocking_until_home():
    start = joints.HOME_POSITIONS + np.array([0.5, 0, 0, 0, 0, 0])
    with FirmwareSimulator(boot_text=False, initial_positions=start) as s, serial.Serial(s.port, timeout=0.05) as p:
        send(p, proto.move_home())
        send(p, proto.feedback_request())
        msgs = read_messages(p, 1.5)
        assert len(msgs) == 1
        assert proto.parse_feedback(msgs[0]).positions == pytest.approx(joints.HOME_POSITIONS, abs=3e-3)


def test_loads_follow_tracking_error_and_gripper_blocking(sim, port):
    sim.block_gripper(0.6)
    sim.set_joints([0, 0, math.pi / 2, 0, 0, 1.2])
    send(port, proto.joints_command([0, 0, math.pi / 2, 0, 0, 0.0]))  # close on the object
    time.sleep(0.5)
    assert sim.joints[5] == pytest.approx(0.6, abs=2e-3)
    assert sim.loads[5] > 500  # squeezing
    sim.block_gripper(None)
    assert wait_until(lambda: sim.joints[5] < 0.01)
    assert abs(sim.loads[5]) < 50


def test_boot_in_streaming_mode_with_boot_text_piles_up_stale_frames():
    with FirmwareSimulator(boot_mode=2) as s:
        time.sleep(0.5)
        with serial.Serial(s.port, timeout=0.05) as p:
            p.reset_input_buffer()
            sp = proto.LineSplitter()
            assert read_messages(p, 0.3, sp)  # streaming without being asked
            assert s.output_mode == 2


def test_unread_stream_is_stale_until_flushed():
    with FirmwareSimulator(boot_mode=2, boot_text=False) as s, serial.Serial(s.port, timeout=0.05) as p:
        time.sleep(0.6)
        assert p.in_waiting > 1000  # frames pile up in the OS buffer
        s.set_joints(joints.HOME_POSITIONS + 0.3)
        first = proto.parse_feedback(proto.LineSplitter().feed(p.read(p.in_waiting) + p.readline())[0])
        assert first.positions[0] == pytest.approx(0.0, abs=1e-3)  # old data: the pose before set_joints


def test_fault_garbage_truncation_and_drops_are_counted_by_the_splitter(sim, port):
    send(port, proto.output_mode(2))
    read_messages(port, 0.2)
    sp = proto.LineSplitter()
    sim.inject_garbage(40)
    sim.truncate_next_lines(3)
    sim.drop_replies(5)
    msgs = read_messages(port, 1.0, sp)
    assert sim.stats["truncated_lines"] == 3 and sim.stats["dropped_replies"] == 5
    assert sp.counts.partial >= 1
    assert len(msgs) > 40  # the stream goes on
    assert all(m["T"] == 1051 for m in msgs)


def test_disconnect_and_reconnect_keep_the_link_and_the_pose(sim):
    p = serial.Serial(sim.port, timeout=0.05)
    send(p, proto.joints_command([0.3, 0, math.pi / 2, 0, 0, 0]))
    assert wait_until(lambda: abs(sim.joints[0] - 0.3) < 2e-3)
    old = sim.pty_path
    sim.disconnect()
    assert not os.path.exists(sim.port) and not sim.connected
    with pytest.raises((serial.SerialException, OSError)):
        for _ in range(50):
            p.read(1)
            p.write(b"{}\n")
            time.sleep(0.01)
    p.close()
    with pytest.raises(serial.SerialException):
        serial.Serial(sim.port)
    sim.reconnect()
    assert sim.connected and os.path.islink(sim.port) and old is not None
    with serial.Serial(sim.port, timeout=0.05) as p2:
        send(p2, proto.feedback_request())
        fb = proto.parse_feedback(read_messages(p2, 0.2)[0])
        assert fb.positions[0] == pytest.approx(0.3, abs=2e-3)


def test_reboot_restores_boot_mode():
    with FirmwareSimulator(boot_mode=2, boot_text=True) as s, serial.Serial(s.port, timeout=0.05) as p:
        send(p, proto.output_mode(0))
        assert wait_until(lambda: s.output_mode == 0)
        s.reboot()
        assert s.output_mode == 2
        sp = proto.LineSplitter()
        read_messages(p, 0.3, sp)
        assert sp.counts.non_json >= 2 and sp.counts.messages > 0  # boot text, then the stream


def test_command_listener_sees_every_command(sim, port):
    seen = []
    sim.add_command_listener(lambda t, m: seen.append(m["T"]))
    for _ in range(5):
        send(port, proto.feedback_request())
    assert wait_until(lambda: len(seen) == 5)


def test_cli_prints_port_and_writes_port_file(tmp_path):
    port_file = tmp_path / "port"
    link = str(tmp_path / "arm")
    proc = subprocess.Popen([sys.executable, "-m", "roarm_driver.firmware_sim", "--link", link, "--port-file",
                             str(port_file), "--no-boot-text"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert proc.stdout.readline().strip() == link
        assert port_file.read_text().strip() == link
        with serial.Serial(link, timeout=0.05) as p:
            send(p, proto.feedback_request())
            assert read_messages(p, 0.3)[0]["T"] == 1051
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
    assert not os.path.exists(link)


def test_cli_stop_waits_for_the_host_to_close_the_port_first(tmp_path):
    # launch signals every process at once: the simulator outlives the driver's port, so the driver never sees its
    # link vanish; a second signal ends it at once.
    link = str(tmp_path / "arm")
    argv = [sys.executable, "-m", "roarm_driver.firmware_sim", "--link", link, "--no-boot-text", "--exit-grace", "30"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for second_signal in (False, True):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout.readline().strip() == link
            host = serial.Serial(link, timeout=0.05)
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None  # still serving the host
            send(host, proto.feedback_request())
            assert read_messages(host, 0.3)[0]["T"] == 1051
            if second_signal:
                proc.send_signal(signal.SIGINT)
            else:
                host.close()
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            host.close()
    assert not os.path.exists(link)
