"""Closed-loop episodes without ROS: simulation -> world model -> MPPI -> simulation, in one process.

``swingup``: pendulum and cart-pole swing-up and balance on the shipped learned models (success rate over seeded
episodes). ``push``: the humanoid standing under pushes, MPPI + world model + balance critics against a PD-only
baseline (largest push impulse survived, by bisection). ``report``: plots and the JSON of every figure.
No rclpy, no torch.
"""
