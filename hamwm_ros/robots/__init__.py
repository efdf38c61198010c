"""Robot descriptions: the URDF files MuJoCo and Pinocchio both load (``humanoid.urdf`` is generated)."""
