"""The simulated pick world without ROS: scene draw, box physics, outcome judge and renderer behind one object.

The node (sim_world_node.py) feeds it the measured joints from ``joint_states`` and a clock; tests and the
kinematic rollout feed it a simulated arm directly.
"""

from __future__ import annotations

import numpy as np

from .box_physics import BoxPhysics, GraspTolerance
from .outcome import OutcomeJudge, OutcomeRules, OutcomeState
from .renderer import Renderer
from .scene import BoxPose, CameraModel, Episode, SceneConfig, draw_episode


class SimWorld:
    def __init__(self, scene: SceneConfig = SceneConfig(), camera: CameraModel = CameraModel(),
                 rules: OutcomeRules = OutcomeRules(), tolerance: GraspTolerance = GraspTolerance()):
        self.scene = scene
        self.camera = camera
        self.renderer = Renderer(camera, scene.table_top_z, scene.table_x, scene.table_y)
        self.judge = OutcomeJudge(rules)
        self.episode: Episode | None = None
        self.episode_index = -1
        self.physics = BoxPhysics(draw_episode(0, scene).box, scene.table_top_z, tolerance)
        self._start_time = 0.0

    def new_episode(self, seed: int) -> Episode:
        """Draw the episode for ``seed`` (box + arm start pose); the clock starts with ``start_clock``."""
        episode = draw_episode(seed, self.scene)
        self.episode = episode
        self.physics.reset(episode.box)
        self.judge.reset()
        return episode

    def start_clock(self, t: float) -> None:
        """The episode is live from time ``t`` (s): the arm has reached its start pose."""
        self.episode_index += 1
        self._start_time = t
        self.judge.reset()

    def step(self, q, t: float) -> OutcomeState:
        """Advance the box for the measured joints ``q`` and judge the episode at time ``t`` (s)."""
        self.physics.step(q)
        return self.judge.update(max(0.0, t - self._start_time), self.physics.box_bottom_height, self.physics.grasped)

    def track_arm(self, q) -> None:
        """Move the box with the arm without judging (between episodes, while the arm goes to its start pose)."""
        self.physics.step(q)

    def render(self, q) -> np.ndarray:
        return self.renderer.render(q, self.physics.box, self.physics.grasped)

    @property
    def box(self) -> BoxPose:
        return self.physics.box
