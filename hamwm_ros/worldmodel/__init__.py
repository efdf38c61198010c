"""hamwm_ros.worldmodel."""
