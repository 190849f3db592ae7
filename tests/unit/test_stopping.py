"""StopSignal: a stop request from any thread ends an interruptible wait, and only that."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pgsubscriber._stopping import StopSignal

WAIT_BOUND = 5.0  # only to fail a hang


async def _forever() -> str:
    await asyncio.sleep(3600)
    return "never"


async def _quick() -> str:
    await asyncio.sleep(0)
    return "done"


def test_an_interruptible_wait_returns_its_result_when_no_stop_comes() -> None:
    async def main() -> str | None:
        signal = StopSignal()
        signal.bind()
        return await signal.interruptible(_quick())

    assert asyncio.run(main()) == "done"


def test_a_stop_from_the_loop_ends_the_wait_with_none_and_the_task_goes_on() -> None:
    async def main() -> tuple[str | None, str]:
        signal = StopSignal()
        signal.bind()
        asyncio.get_running_loop().call_later(0.05, signal.request)
        result = await asyncio.wait_for(signal.interruptible(_forever()), WAIT_BOUND)
        await asyncio.sleep(0)  # the task was not left cancelled
        return result, "went on"

    assert asyncio.run(main()) == (None, "went on")


def test_a_stop_from_another_thread_ends_the_wait() -> None:
    async def main() -> str | None:
        signal = StopSignal()
        signal.bind()
        threading.Timer(0.05, signal.request).start()
        return await asyncio.wait_for(signal.interruptible(_forever()), WAIT_BOUND)

    assert asyncio.run(main()) is None


def test_a_stop_requested_before_the_wait_does_not_start_it() -> None:
    async def main() -> str | None:
        signal = StopSignal()
        signal.request()
        signal.bind()
        return await signal.interruptible(_forever())

    assert asyncio.run(main()) is None


def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    async def main() -> None:
        signal = StopSignal()
        signal.bind()
        task = asyncio.ensure_future(signal.interruptible(_forever()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_stop_while_no_wait_runs_cancels_nothing_later() -> None:
    async def main() -> str | None:
        signal = StopSignal()
        signal.bind()
        signal.request()
        await asyncio.sleep(0.01)  # the request was handled while nothing waited
        return await signal.interruptible(_quick())  # stopped: the work is not started

    assert asyncio.run(main()) is None


def test_a_stop_from_inside_the_waiting_task_leaves_no_cancellation_behind() -> None:
    """As from a signal handler, which runs in whatever task is running: here, the waiting one."""

    async def main() -> tuple[str | None, str]:
        signal = StopSignal()
        signal.bind()

        async def work() -> str:
            signal.request()  # inside the waiting task, and the work ends without suspending
            return "value"

        result = await signal.interruptible(work())
        await asyncio.sleep(0.01)  # a cancellation left pending would be raised here
        return result, "went on"

    assert asyncio.run(main()) == ("value", "went on")
