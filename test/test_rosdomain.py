"""private_domain: the user's ROS_DOMAIN_ID wins; otherwise a random one is set for this process and children."""

import os

import pytest

from hamwm_ros.rosdomain import DOMAIN_RANGE, private_domain


def test_keeps_the_users_domain(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    assert private_domain() == (42, False)


def test_picks_and_exports_a_random_domain_when_unset(monkeypatch):
    monkeypatch.delenv('ROS_DOMAIN_ID', raising=False)
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    domain, chosen = private_domain()
    assert chosen and DOMAIN_RANGE[0] <= domain <= DOMAIN_RANGE[1]
    assert os.environ['ROS_DOMAIN_ID'] == str(domain)
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'


def test_rejects_a_non_integer_domain(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', 'abc')
    with pytest.raises(ValueError, match='ROS_DOMAIN_ID'):
        private_domain()
