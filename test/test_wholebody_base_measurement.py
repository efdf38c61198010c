"""``base_measurement``: the IMU + odometry messages a robot publishes -> the estimator's BaseMeasurement.

Real sensor_msgs/Imu and nav_msgs/Odometry messages; the function itself reads them by attribute (no rclpy).
"""

from __future__ import annotations

import math

from nav_msgs.msg import Odometry
import numpy as np
import pinocchio as pin
from sensor_msgs.msg import Imu

from hamwm_ros.wholebody import base_measurement

YAW = math.pi / 2
YAWED = (0.0, 0.0, math.sin(YAW / 2), math.cos(YAW / 2))   # x, y, z, w


def imu(orientation=YAWED, has_orientation=True) -> Imu:
    msg = Imu()
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (2.0 * v for v in orientation)
    if not has_orientation:
        msg.orientation_covariance[0] = -1.0
    msg.angular_velocity.z = 0.3
    msg.linear_acceleration.z = 9.81
    return msg


def odom(orientation=YAWED) -> Odometry:
    msg = Odometry()
    msg.pose.pose.position.x, msg.pose.pose.position.z = 1.0, 0.9
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = orientation
    msg.twist.twist.linear.x = 0.5          # forward in the base frame
    return msg


def test_imu_and_odometry_give_the_full_base_state_with_the_twist_in_world_axes():
    m = base_measurement(1.0, (1.0, imu()), (1.0, odom()), timeout=0.1)
    np.testing.assert_allclose(np.linalg.norm(m.orientation_xyzw), 1.0)   # the message's 2x quaternion normalised
    np.testing.assert_allclose(m.position, [1.0, 0.0, 0.9])
    # Yawed 90 degrees: forward in the base frame is +y in the world (cross-checked with Pinocchio's rotation).
    rotation = pin.Quaternion(*np.roll(m.orientation_xyzw, 1)).toRotationMatrix()
    np.testing.assert_allclose(m.linear_velocity, rotation @ [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(m.linear_velocity, [0.0, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(m.angular_velocity, [0.0, 0.0, 0.3])
    np.testing.assert_allclose(m.linear_acceleration, [0.0, 0.0, 9.81])


def test_stale_or_missing_messages_fall_back_step_by_step():
    assert base_measurement(1.0, None, (1.0, odom()), 0.1) is None                    # no IMU: stance kinematics
    assert base_measurement(1.0, (0.8, imu()), (1.0, odom()), 0.1) is None            # stale IMU
    alone = base_measurement(1.0, (1.0, imu()), (0.5, odom()), 0.1)                   # stale odometry: IMU alone
    assert alone is not None and alone.position is None and alone.linear_velocity is None


def test_an_imu_without_orientation_needs_odometry():
    assert base_measurement(1.0, (1.0, imu(has_orientation=False)), None, 0.1) is None
    level = (0.0, 0.0, 0.0, 1.0)
    m = base_measurement(1.0, (1.0, imu(has_orientation=False)), (1.0, odom(level)), 0.1)
    np.testing.assert_allclose(m.orientation_xyzw, level)                              # odometry's orientation


def test_unusable_quaternions_are_refused():
    assert base_measurement(1.0, (1.0, imu((0.0, 0.0, 0.0, 0.0))), None, 0.1) is None
    assert base_measurement(1.0, (1.0, imu((math.nan, 0.0, 0.0, 1.0))), None, 0.1) is None
