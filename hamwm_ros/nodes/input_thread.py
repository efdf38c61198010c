"""High-rate subscriptions served on their own thread by a bare wait set instead of rclpy's Python executor.

rclpy's Python executor spends ~0.3 ms of interpreter time per message on this machine (task and wait-set
bookkeeping around each callback; a one-off measurement with a 500 Hz JointState stream: 355 us of thread CPU per
message on a node with one subscription, 95 us for a bare wait set + take + the same callback; the reproducible
comparison is ``hamwm bench mpc --loop-only --mpc-param input_thread:=true|false``). In mpc_node that work holds the
interpreter lock that the 500 Hz control thread needs: ``py-spy record --gil`` attributed 94 % of the lock-holding
samples to the executor thread. Here the subscriptions live on a private node ``<owner>_input`` that no executor
spins; one thread waits on them with rclpy's wait set (the mechanism behind ``rclpy.wait_for_message``), takes each
message and calls its callback. The owner's services, parameters and timers stay on its own executor.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from hamwm_ros.nodes import name_os_thread

try:   # rclpy's C extension: the wait set that rclpy.wait_for_message uses
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    _WAIT_SET = hasattr(_rclpy, 'WaitSet')
except ImportError:  # pragma: no cover - an rclpy without it: fall back to an executor on the private node
    _rclpy, _WAIT_SET = None, False

WAIT_NS = 200_000_000      # wake up at least this often (ns) to notice a stop or a dead context


class InputThread:
    """Subscriptions of ``owner`` on a private node ``<owner>_input``, served by a dedicated thread.

    Topic names are resolved with the owner's namespace and remappings (the private node ignores global arguments,
    so a ``__node:=`` remap of the owner cannot give both nodes the same name). Subscribe everything before
    :meth:`start`.

    Parameters
    ----------
    owner
        The node whose callbacks run here; they must be safe to run concurrently with the owner's own callbacks.
    on_error
        Called with the exception when a callback raises (the thread keeps serving); default: re-raise, which ends
        the thread.
    """

    def __init__(self, owner: Node, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._owner = owner
        self._on_error = on_error
        self.node: Node | None = rclpy.create_node(
            f'{owner.get_name()}_input', namespace=owner.get_namespace(), context=owner.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False)
        self._subscriptions: list[Any] = []
        self._wake = self.node.create_guard_condition(lambda: None)
        self._executor: SingleThreadedExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: QoSProfile | int) -> Any:
        """Subscribe ``topic`` (resolved as the owner would) with ``callback`` run on the input thread.

        Raises
        ------
        RuntimeError
            If the thread is already running.
        """
        if self._thread is not None:
            raise RuntimeError('subscribe before start()')
        subscription = self.node.create_subscription(msg_type, self._owner.resolve_topic_name(topic), callback, qos)
        self._subscriptions.append(subscription)
        return subscription

    def start(self) -> None:
        """Start serving the subscriptions (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f'{self.node.get_name()}_thread', daemon=True)
            self._thread.start()

    def _run(self) -> None:
        name_os_thread()
        try:
            if _WAIT_SET:
                self._serve_wait_set()
            else:  # pragma: no cover - depends on the rclpy build
                self._executor = SingleThreadedExecutor(context=self.node.context)
                self._executor.add_node(self.node)
                self._executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        except Exception:  # noqa: BLE001 - a context shut down under the wait raises several rclpy types
            if not self._stop.is_set() and self.node is not None and self.node.context.ok():
                raise

    def _serve_wait_set(self) -> None:
        subscriptions = list(self._subscriptions)
        context = self.node.context
        wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, 0, context.handle)
        while not self._stop.is_set() and context.ok():
            wait_set.clear_entities()
            for subscription in subscriptions:
                wait_set.add_subscription(subscription.handle)
            wait_set.add_guard_condition(self._wake.handle)
            wait_set.wait(WAIT_NS)
            ready = wait_set.get_ready_entities('subscription')
            for subscription in subscriptions:
                if subscription.handle.pointer not in ready:
                    continue
                while not self._stop.is_set():        # drain: several may have queued while a callback ran
                    taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
                    if taken is None:
                        break
                    self._dispatch(subscription.callback, taken[0])

    def _dispatch(self, callback: Callable[[Any], None], message: Any) -> None:
        try:
            callback(message)
        except Exception as error:  # noqa: BLE001 - one bad message must not end the input thread
            if self._on_error is None:
                raise
            self._on_error(error)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and destroy the private node (idempotent)."""
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=timeout)
        elif self.node is not None and self.node.context.ok():
            self._wake.trigger()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.node is not None:
            self.node.destroy_node()
            self.node = None


__all__ = ['InputThread']
