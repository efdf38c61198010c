"""hamwm_ros.sim."""
