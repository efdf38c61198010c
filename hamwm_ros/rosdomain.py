"""A private ROS 2 domain for commands that start their own node graph (``hamwm demo``, ``hamwm bench mpc``).

Two graphs on one domain hear each other: a second simulator publishing ``/joint_states`` for the same joint names
would silently corrupt a closed-loop measurement. These commands therefore pick a random domain unless the user set
``ROS_DOMAIN_ID`` (to watch the run in rviz, set it in both shells).
"""

from __future__ import annotations

import os
import random

DOMAIN_RANGE = (1, 100)   # within the range every RMW maps to distinct ports on one host


def private_domain() -> tuple[int, bool]:
    """Use ``ROS_DOMAIN_ID`` if set, else set a random one (and localhost discovery) for this process and children.

    Call before ``rclpy.init`` and before starting node processes.

    Returns
    -------
    tuple[int, bool]
        The domain in use, and whether it was chosen here (False: the user's).

    Raises
    ------
    ValueError
        If ``ROS_DOMAIN_ID`` is set but not an integer.
    """
    given = os.environ.get('ROS_DOMAIN_ID', '').strip()
    if given:
        try:
            return int(given), False
        except ValueError:
            raise ValueError(f'ROS_DOMAIN_ID must be an integer, got {given!r}') from None
    domain = random.SystemRandom().randint(*DOMAIN_RANGE)
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return domain, True
