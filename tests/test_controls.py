"""Navigation math (viewer/controls.py), no window needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render.camera import Camera
from viewer import controls as C

UP = np.array([0.0, -1.0, 0.0])


def front_pose(distance: float = 3.0) -> C.ViewPose:
    cam = Camera.look_at((0, 0, -distance), (0, 0, 0), fov_y_deg=40, width=320, height=240)
    return C.pose_from_camera(cam, distance)


def project(pose: C.ViewPose, point, width=320, height=240) -> np.ndarray:
    cam = pose.camera(width, height)
    p = cam.viewmat.double().numpy() @ np.append(np.asarray(point, float), 1.0)
    return np.array([cam.fx * p[0] / p[2] + cam.cx, cam.fy * p[1] / p[2] + cam.cy])


def test_pose_round_trips_a_camera_exactly():
    cam = Camera.look_at((1.0, -0.5, -2.5), (0.1, 0.2, 0.0), fov_y_deg=55, width=640,
                         height=480)
    pose = C.pose_from_camera(cam, 2.0)
    back = pose.camera(640, 480)
    assert torch.allclose(back.viewmat, cam.viewmat, atol=1e-5)
    assert back.fy == pytest.approx(cam.fy, rel=1e-6)


def test_orbit_keeps_pivot_and_distance_and_turns_with_the_mouse():
    pose = front_pose()
    moved = C.orbit(pose, UP, dx=100, dy=0)
    assert np.allclose(moved.pivot, pose.pivot, atol=1e-9)
    assert np.linalg.norm(moved.position - moved.pivot) == pytest.approx(3.0)
    # Dragging right swings the camera to its left (negative along its old right axis).
    assert np.dot(moved.position - pose.position, pose.right) < -0.1
    # The model turns with the mouse: a point between the pivot and the camera (the
    # model's near side) moves right on screen.
    assert project(pose, (0, 0, -1))[0] == pytest.approx(160)
    assert project(moved, (0, 0, -1))[0] > 170
    # Dragging down raises the camera over the model (towards world up).
    raised = C.orbit(pose, UP, dx=0, dy=100)
    assert np.dot(raised.position - pose.position, UP) > 0.1


def test_orbit_never_flips_over_the_pole():
    pose = front_pose()
    for _ in range(200):
        pose = C.orbit(pose, UP, dx=0, dy=50)
    cos = abs(float(np.dot(pose.forward, UP)))
    assert cos <= math.cos(C.POLE_MARGIN) + 1e-9
    # Screen-up stays on the world-up side: the image is not upside down.
    assert np.dot(-pose.down, UP) > -1e-9


def test_orbit_keeps_roll_of_a_training_camera():
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), up=(0.3, -1.0, 0.0))  # rolled view
    pose = C.pose_from_camera(cam, 3.0)
    roll = lambda p: float(np.dot(p.right, UP))
    moved = C.orbit(pose, UP, dx=80, dy=0)
    assert roll(moved) == pytest.approx(roll(pose), abs=1e-9)


def test_pan_moves_the_pivot_point_with_the_mouse():
    pose = front_pose()
    before = project(pose, pose.pivot)
    moved = C.pan(pose, dx=25, dy=-10, height=240)
    after = project(moved, pose.pivot)
    assert after == pytest.approx(before + np.array([25, -10]), abs=1e-6)


def test_dolly_scales_distance_and_keeps_pivot():
    pose = front_pose()
    closer = C.dolly(pose, 2)
    assert closer.distance == pytest.approx(3.0 * C.DOLLY_STEP**2)
    assert np.allclose(closer.pivot, pose.pivot)
    assert C.dolly(pose, -2).distance > pose.distance


def test_fov_zoom_scales_focal_and_is_clamped():
    pose = front_pose()
    z = C.zoom_fov(pose, 1)
    f0 = pose.camera(320, 240).fy
    assert z.camera(320, 240).fy == pytest.approx(f0 / C.FOV_STEP, rel=1e-9)
    assert C.zoom_fov(pose, 500).fov_y == pytest.approx(C.MIN_FOV)
    assert C.zoom_fov(pose, -500).fov_y == pytest.approx(C.MAX_FOV)


def test_fly_moves_along_view_right_and_up():
    pose = front_pose()
    moved = C.fly(pose, UP, forward=1.0, right=0.5, rise=0.25)
    expected = pose.position + pose.forward + 0.5 * pose.right + 0.25 * UP
    assert np.allclose(moved.position, expected)
    assert moved.distance == pose.distance


def test_look_turns_about_the_camera_centre():
    pose = front_pose()
    turned = C.look(pose, UP, dx=50, dy=20)
    assert np.allclose(turned.position, pose.position)
    assert not np.allclose(turned.forward, pose.forward)


def test_frame_bounds_fits_the_box():
    pose = front_pose(10.0)
    lo, hi = np.array([-1.0, -1, -1]), np.array([3.0, 1, 1])
    framed = C.frame_bounds(pose, lo, hi, aspect=320 / 240)
    assert np.allclose(framed.pivot, (lo + hi) / 2)
    for corner in ([-1, -1, -1], [3, 1, 1], [3, -1, 1], [-1, 1, -1]):
        u, v = project(framed, corner)
        assert -1 <= u <= 321 and -1 <= v <= 241


def test_up_from_cameras_averages_minus_y():
    upside_down = [np.diag([1.0, -1.0, -1.0])] * 3  # OpenGL-style: y up
    assert np.allclose(C.up_from_cameras(upside_down), [0, 1, 0])
    assert C.up_from_cameras([]) is None


def test_level_removes_roll():
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), up=(0.5, -1.0, 0.0))
    levelled = C.level(C.pose_from_camera(cam, 3.0), UP)
    assert abs(float(np.dot(levelled.right, UP))) < 1e-9
    assert np.allclose(levelled.forward, C.pose_from_camera(cam, 3.0).forward)
