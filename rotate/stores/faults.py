"""Fault injection for the in-memory store: the next calls of a method fail, before or after."""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from rotate.errors import StoreError

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: the SecretStore methods `fail_next` can make fail
METHODS = frozenset(
    {
        "check",
        "pending",
        "read_state",
        "read_current",
        "stage",
        "promote",
        "discard",
        "settle",
        "read_field",
        "read_record",
        "write_record",
        "delete_record",
        "record_failure",
        "list_paths",
        "generate_password",
    }
)


@dataclass
class _Fault:
    times: int
    error: Exception
    after: bool


class FaultInjection:
    """A store's injected faults: `fail_next` queues them per method, `calls` counts calls.

    A mixin: the store's coroutines run through `faulty`, its blocking calls through
    `_with_faults`, both under the lock its data lives under (a call and its fault are one
    step).
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._fault_lock = lock
        self._faults: dict[str, list[_Fault]] = {}
        self._calls: Counter[str] = Counter()

    def fail_next(
        self,
        method: str,
        times: int = 1,
        error: Exception | None = None,
        *,
        after: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` raise `error` (a StoreError by default).

        With `after=True` the call takes effect first and then raises, like a write whose
        response was lost: the pipeline cannot tell, and must converge anyway.
        """
        if method not in METHODS:
            raise ValueError(f"unknown store method {method!r} (known: {sorted(METHODS)})")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(times, error or StoreError(f"injected failure in {method}"), after)
        with self._fault_lock:
            self._faults.setdefault(method, []).append(fault)

    def calls(self, method: str) -> int:
        """How many times `method` was called (failed calls included)."""
        with self._fault_lock:
            return self._calls[method]

    def _begin(self, method: str) -> Exception | None:
        """Count a call of `method` and take the fault queued for it: raise it now when it
        fails the call before it takes effect, else return it (or None) to raise after."""
        with self._fault_lock:
            self._calls[method] += 1
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times == 0:
                queue.pop(0)
        if not fault.after:
            raise fault.error
        return fault.error

    def _with_faults(self, method: str, call: Callable[[], _T]) -> _T:
        """A blocking store method `call`, under the store's lock, with its faults."""
        after = self._begin(method)
        with self._fault_lock:
            result = call()
        if after is not None:
            raise after
        return result


def faulty(
    method: Callable[Concatenate[Any, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[FaultInjection, _P], Coroutine[Any, Any, _T]]:
    """The data-plane method, with the faults `fail_next` queued for it."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(store: FaultInjection, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        after = store._begin(name)
        result = await method(store, *args, **kwargs)
        if after is not None:
            raise after
        return result

    return wrapper
