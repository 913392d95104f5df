"""``roarm-vla-record``: the terminal client for a person at the arm (the logic is record_session.RecordSession).

    roarm-vla-record --task "Pick up the white box"        # with a running record graph (record.launch.py, runner)

Keys (no Enter needed on a terminal): s start an episode, k stop and keep it, d discard it, q quit. The screen
shows the episode number, the elapsed time, per recorded topic its message count, rate and when the last message
came, and a WARNING line for a topic that went silent. Talks to episode_recorder through its ``record_episode``
action (feedback = the live counts) and ``stop_episode`` service; an episode that ends by itself (max duration,
the simulated world's outcome, a write error) is reported the same way.

On a terminal, keys are read unbuffered and the screen is redrawn in place; with a pipe (scripts, tests) keys are
read as they arrive and the status is printed as lines, at most once a second unless something changed.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time
from typing import Any

from roarm_recorder.record_session import DISCARD, KEEP, QUIT, START, RecordSession

CLEAR = "\x1b[H\x1b[J"


class KeyReader:
    """Characters from stdin as they are typed: cbreak mode on a terminal (restored on exit), raw reads otherwise."""

    def __init__(self, stream=sys.stdin):
        self.fd = stream.fileno()
        self.tty = os.isatty(self.fd)
        self.closed = False
        self._saved = None
        if self.tty:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def read(self, timeout: float) -> str:
        if self.closed:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        data = os.read(self.fd, 64)
        if not data:
            self.closed = True  # end of a piped input: no more keys
        return data.decode("utf-8", "replace")

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class RecordClient:
    """The ROS side: sends what the session asks for, feeds results back into it (under one lock)."""

    def __init__(self, node, session: RecordSession, task: str, max_duration: float, action_name: str,
                 stop_service: str):
        from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)

        from roarm_interfaces.action import RecordEpisode
        from roarm_interfaces.srv import StopEpisode

        self.node, self.session, self.task, self.max_duration = node, session, task, max_duration
        self.lock = threading.Lock()
        self.action = ActionClient(node, RecordEpisode, action_name)
        self.stop_client = node.create_client(StopEpisode, stop_service)
        self._goal_type = RecordEpisode.Goal
        self._stop_type = StopEpisode.Request

    def key(self, char: str) -> str | None:
        with self.lock:
            request = self.session.key(char, time.monotonic())
        if request == START:
            self._start()
        elif request in (KEEP, DISCARD):
            self._stop(request == KEEP)
        return request

    def _start(self) -> None:
        if not self.action.wait_for_server(timeout_sec=3.0):
            with self.lock:
                self.session.failed(f"{self.action._action_name} is not available: is episode_recorder running and "
                                    "active (record.launch.py, `roarm-vla run record`)?")
            return
        future = self.action.send_goal_async(self._goal_type(task=self.task, max_duration=self.max_duration),
                                             feedback_callback=self._on_feedback)
        future.add_done_callback(self._on_goal)

    def _on_goal(self, future) -> None:
        handle = future.result()
        with self.lock:
            self.session.goal_answered(bool(handle.accepted), time.monotonic(),
                                       "" if handle.accepted else "another episode is running, or the task is empty")
        if handle.accepted:
            handle.get_result_async().add_done_callback(self._on_result)

    def _on_feedback(self, message) -> None:
        fb = message.feedback
        with self.lock:
            self.session.feedback(fb.episode_index, fb.elapsed, list(fb.topics), list(fb.counts),
                                  list(fb.silent_for), time.monotonic())

    def _on_result(self, future) -> None:
        result = future.result().result
        with self.lock:
            self.session.finished(bool(result.kept), result.message or result.end_reason, int(result.episode_index))

    def _stop(self, keep: bool) -> None:
        if not self.stop_client.service_is_ready():
            with self.lock:
                self.session.failed(f"{self.stop_client.srv_name} is not available")
            return
        self.stop_client.call_async(self._stop_type(keep=keep)).add_done_callback(self._on_stopped)

    def _on_stopped(self, future) -> None:
        reply = future.result()
        if reply is not None and not reply.success and "no episode" in reply.message:
            with self.lock:
                self.session.failed(reply.message)

    def lines(self) -> list[str]:
        ready = self.action.server_is_ready()
        with self.lock:
            self.session.connected = ready
            return self.session.lines(time.monotonic())

    def busy(self) -> bool:
        with self.lock:
            return self.session.state != "idle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roarm-vla-record", description=__doc__.split("\n\n")[0],
                                     epilog="keys: s start | k stop and keep | d discard | q quit")
    parser.add_argument("--task", default="Pick up the white box", help="task text stored with each episode")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="s after which an episode ends and is kept (0 = the recorder's default_max_duration)")
    parser.add_argument("--action", default="record_episode", help="the recorder's record_episode action")
    parser.add_argument("--stop-service", default="stop_episode", help="the recorder's stop_episode service")
    parser.add_argument("--silence-timeout", type=float, default=1.0, help="s before a quiet topic is warned about")
    parser.add_argument("--refresh", type=float, default=0.2, help="s between screen updates")
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.task.strip():
        parser.error("--task must not be empty")

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    rclpy.init(args=["roarm-vla-record", *ros_args], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("record_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    running = threading.Event()
    running.set()

    def spin() -> None:
        while running.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    session = RecordSession(silence_timeout=args.silence_timeout)
    client = RecordClient(node, session, args.task.strip(), args.max_duration, args.action, args.stop_service)
    keys = KeyReader()
    screen = Screen(sys.stdout, keys.tty)
    try:
        while True:
            for char in keys.read(args.refresh):
                client.key(char)
            screen.show(client.lines())
            if session.done and not client.busy():
                break
            if keys.closed and not client.busy():
                break  # piped input ended and no episode runs: nothing more can be asked for
    except KeyboardInterrupt:
        if client.busy():
            client._stop(False)
            end = time.monotonic() + 10.0
            while client.busy() and time.monotonic() < end:
                time.sleep(0.05)
            screen.show(client.lines(), force=True)
    finally:
        keys.restore()
        running.clear()
        spinner.join(timeout=2.0)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    print(f"episodes this session: {session.kept} kept, {session.discarded} discarded", flush=True)
    return 0


class Screen:
    """Redraw in place on a terminal; on a pipe print the block when it changed (ignoring the clock) or every 1 s."""

    def __init__(self, stream: Any, tty: bool, period: float = 1.0):
        self.stream, self.tty, self.period = stream, tty, period
        self._last_text, self._last_time = "", 0.0

    def show(self, lines: list[str], force: bool = False) -> None:
        text = "\n".join(lines)
        now = time.monotonic()
        if self.tty:
            self.stream.write(CLEAR + text + "\n")
        else:
            # episode number and state, which topics are warned about, the message: not the counts or the clock
            shape = "\n".join([lines[0][:24], lines[0].rsplit(")", 1)[-1]] + [line.split()[1] for line in lines if line.startswith("WARNING")]
                              + [lines[-1]])
            if not force and shape == self._last_text and now - self._last_time < self.period:
                return
            self._last_text, self._last_time = shape, now
            self.stream.write(text + "\n")
        self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
