"""High-rate subscriptions on their own light node and executor thread.

rclpy's Python executor walks every entity of a node on each wake-up (lifecycle and parameter services, publishers'
and subscriptions' QoS event handlers, timers) while holding the interpreter lock. For a controller node with ~40
such entities and /joint_states at 500 Hz, that walk held the lock for most of the time a profile sampled
(``py-spy record --gil``: the executor thread 94 % of the lock-holding samples) and made the control thread wait for
it. Moving the high-rate inputs to a node that has nothing else (no parameter services, no rosout, one subscription
per input) makes each wake-up short; the owner's services, parameters and timers stay on its own executor.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile


class InputThread:
    """Subscriptions of ``owner`` served by a private node ``<owner>_input`` on a dedicated executor thread.

    Topic names are resolved with the owner's namespace and remappings (the private node ignores global arguments,
    so a ``__node:=`` remap of the owner cannot give both nodes the same name).

    Parameters
    ----------
    owner
        The node whose callbacks run here; they must be safe to run concurrently with the owner's own callbacks.
    """

    def __init__(self, owner: Node) -> None:
        self._owner = owner
        self.node = rclpy.create_node(f'{owner.get_name()}_input', namespace=owner.get_namespace(),
                                      context=owner.context, use_global_arguments=False,
                                      start_parameter_services=False, enable_rosout=False)
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: QoSProfile | int) -> Any:
        """Subscribe ``topic`` (resolved as the owner would) with ``callback`` run on the input thread."""
        return self.node.create_subscription(msg_type, self._owner.resolve_topic_name(topic), callback, qos)

    def start(self) -> None:
        """Start serving the subscriptions (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, name=f'{self.node.get_name()}_executor', daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        try:
            # spin(), not spin_once(timeout): each timed spin_once builds a timeout timer, under the lock, per message.
            self._executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        except Exception:  # noqa: BLE001 - a context shut down under the wait raises several rclpy types
            if not self._stop.is_set() and self._owner.context.ok():
                raise

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and destroy the private node (idempotent)."""
        self._stop.set()
        self._executor.shutdown(timeout_sec=timeout)   # wakes spin()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.node is not None:
            self.node.destroy_node()
            self.node = None


__all__ = ['InputThread']
