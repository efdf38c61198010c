"""hamwm_ros.runtime."""
