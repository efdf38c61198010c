"""hamwm_ros.wholebody."""
