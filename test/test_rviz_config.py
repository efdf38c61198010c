"""config/hamwm.rviz: a valid rviz config whose displays name topics the nodes really publish."""

from pathlib import Path
import re

import yaml

ROOT = Path(__file__).resolve().parent.parent
RVIZ = ROOT / 'config' / 'hamwm.rviz'
EXTERNAL = {'/robot_description'}      # robot_state_publisher's, on a ROS 2 host


def _topics(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        topic = node.get('Topic')
        if isinstance(topic, dict) and topic.get('Value'):
            found.append(topic['Value'])
        for key, value in node.items():
            if key == 'Description Topic' and isinstance(value, dict) and value.get('Value'):
                found.append(value['Value'])
            found += _topics(value)
    elif isinstance(node, list):
        for item in node:
            found += _topics(item)
    return found


def test_every_display_topic_is_published_by_a_node():
    config = yaml.safe_load(RVIZ.read_text())
    topics = set(_topics(config))
    assert '/hamwm/world_model/markers' in topics and '/camera/image_raw' in topics, topics
    # topic names as the nodes create them (relative names resolve to /<name> in the default namespace)
    source = '\n'.join(p.read_text() for p in (ROOT / 'hamwm_ros' / 'nodes').glob('*.py'))
    published = {'/' + name.lstrip('/') for name in re.findall(
        r"create_(?:lifecycle_)?publisher\(\s*\w+,\s*'([^']+)'", source)}
    published |= {'/' + name.lstrip('/') for name in re.findall(r"\('\w+', \w+, '([^']+)'\)", source)}
    missing = topics - published - EXTERNAL
    assert not missing, f'{RVIZ.name} shows topics no node publishes: {missing} (published: {sorted(published)})'
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == 'odom'
