"""What the terminal client (``roarm-vla-record``) does, without ROS and without a terminal: keys in, requests out,
the recorder's feedback and results in, the screen's lines out. Times are passed in (seconds, any monotonic clock).

Keys: ``s`` start an episode, ``k`` stop and keep it, ``d`` discard it, ``q`` quit (while recording, ``q`` asks first:
press ``q`` again to discard the episode and quit, or ``k``/``d``). Anything else shows the help line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

IDLE, STARTING, RECORDING, STOPPING = "idle", "starting", "recording", "stopping"
START, KEEP, DISCARD, QUIT = "start", "keep", "discard", "quit"
HELP = "keys: s start | k stop and keep | d discard | q quit"


@dataclass
class TopicLine:
    name: str
    count: int = 0
    silent_for: float = -1.0  # s since the last message, -1 = none yet (the recorder's feedback)


@dataclass
class RecordSession:
    """State of one operator session. ``key`` returns the request to send (or None); the ROS layer sends it and
    reports back through ``goal_answered``, ``feedback``, ``finished``."""

    silence_timeout: float = 1.0  # s: a recorded topic quiet this long gets a warning line
    feedback_timeout: float = 2.0  # s without feedback while recording: the recorder itself may be gone
    state: str = IDLE
    episode_index: int | None = None
    started_at: float | None = None
    elapsed: float = 0.0
    last_feedback: float | None = None
    topics: list[TopicLine] = field(default_factory=list)
    kept: int = 0
    discarded: int = 0
    message: str = HELP
    quit_armed: bool = False
    done: bool = False
    connected: bool = False  # the recorder's action server is there (the ROS layer says so)

    # ------------------------------------------------------------------------------------------------- keys
    def key(self, char: str, now: float) -> str | None:
        char = char.lower()
        if char != "q":
            self.quit_armed = False
        if char == "s":
            if self.state != IDLE:
                self.message = f"an episode is {self.state}: k keeps it, d discards it"
                return None
            self.state, self.started_at, self.elapsed, self.topics = STARTING, now, 0.0, []
            self.episode_index, self.last_feedback = None, None
            self.message = "starting an episode..."
            return START
        if char in ("k", "d"):
            if self.state not in (RECORDING, STARTING):
                self.message = "no episode is being recorded: s starts one"
                return None
            self.state = STOPPING
            self.message = "stopping: keeping the episode..." if char == "k" else "stopping: discarding the episode..."
            return KEEP if char == "k" else DISCARD
        if char == "q":
            if self.state == IDLE:
                self.done = True
                return QUIT
            if self.state == STOPPING:
                self.message = "waiting for the recorder to finish the episode; q again after that"
                return None
            if not self.quit_armed:
                self.quit_armed = True
                self.message = "recording: q again discards this episode and quits (k keeps it, d discards it)"
                return None
            self.state, self.done = STOPPING, True
            self.message = "discarding the episode and quitting..."
            return DISCARD
        self.message = HELP
        return None

    # ---------------------------------------------------------------------------------------- recorder side
    def goal_answered(self, accepted: bool, now: float, reason: str = "") -> None:
        if accepted:
            if self.state == STARTING:
                self.state = RECORDING
                self.message = "recording: k keeps, d discards"
            return
        self.state = IDLE
        self.message = f"the recorder refused the episode{': ' + reason if reason else ''}"

    def feedback(self, episode_index: int, elapsed: float, topics: Sequence[str], counts: Sequence[int],
                 silent_for: Sequence[float], now: float) -> None:
        if self.state == STARTING:
            self.state = RECORDING
            self.message = "recording: k keeps, d discards"
        self.episode_index = int(episode_index)
        self.elapsed = float(elapsed)
        self.last_feedback = now
        self.topics = [TopicLine(t, int(c), float(s)) for t, c, s in zip(topics, counts, silent_for)]

    def finished(self, kept: bool, message: str, episode_index: int | None = None) -> None:
        """The episode's result arrived (however it ended: k, d, the time limit, the sim outcome, an error)."""
        if kept:
            self.kept += 1
        else:
            self.discarded += 1
        if episode_index is not None:
            self.episode_index = int(episode_index)
        self.state = IDLE
        self.quit_armed = False
        self.message = message + ("" if self.done else "  |  s starts the next one, q quits")

    def failed(self, message: str) -> None:
        """A request could not be made (no recorder, a service call failed)."""
        self.state = IDLE if self.state in (STARTING, RECORDING, STOPPING) else self.state
        self.message = message

    # ------------------------------------------------------------------------------------------------ screen
    def warnings(self, now: float) -> list[str]:
        if self.state != RECORDING:
            return []
        out = []
        if self.last_feedback is not None and now - self.last_feedback > self.feedback_timeout:
            out.append(f"WARNING: no feedback from episode_recorder for {now - self.last_feedback:.1f} s")
        for topic in self.topics:
            if topic.silent_for < 0 and self.elapsed > self.silence_timeout:
                out.append(f"WARNING: {topic.name}: nothing received since the episode started "
                           f"({self.elapsed:.1f} s)")
            elif topic.silent_for > self.silence_timeout:
                out.append(f"WARNING: {topic.name} silent for {topic.silent_for:.1f} s")
        return out

    def lines(self, now: float) -> list[str]:
        number = "-" if self.episode_index is None else str(self.episode_index)
        head = (f"episode {number}  {self.state.upper():9s}  {self.elapsed:6.1f} s   "
                f"(this session: {self.kept} kept, {self.discarded} discarded)  "
                f"{'recorder connected' if self.connected else 'waiting for episode_recorder...'}")
        out = [head]
        if self.topics:
            width = max(len(t.name) for t in self.topics)
            for topic in self.topics:
                rate = topic.count / self.elapsed if self.elapsed > 0 else 0.0
                last = "never" if topic.silent_for < 0 else f"{topic.silent_for:4.1f} s ago"
                out.append(f"  {topic.name.ljust(width)}  {topic.count:7d} msgs  {rate:6.1f} /s  last {last}")
        out += self.warnings(now)
        out.append(self.message)
        return out
