"""hamwm_ros.nodes."""
