# Twin of twins.cpp's nested_timeouts: test_timeouts.py's nested cases, a
# timeout at the same instant as the completion, and an outside cancel
# racing the expiry.
import asyncio


async def main():
    loop = asyncio.get_running_loop()

    print("-- expiring together")
    when = loop.time() + 0.01
    try:
        async with asyncio.timeout_at(when) as outer:
            try:
                async with asyncio.timeout_at(when) as inner:
                    await asyncio.sleep(10)
            except asyncio.CancelledError:
                print("inner: CancelledError, expired:", inner.expired())
                raise
    except TimeoutError:
        print("outer: TimeoutError, expired:", outer.expired())
    print("cancelling:", asyncio.current_task().cancelling())

    print("-- inner first")
    try:
        async with asyncio.timeout(0.1):
            try:
                async with asyncio.timeout(0.001):
                    await asyncio.sleep(10)
            except TimeoutError:
                print("inner timed out")
            await asyncio.sleep(10)
    except TimeoutError:
        print("outer timed out")

    print("-- completion and expiry at one instant")
    when = loop.time() + 0.01
    fut = loop.create_future()
    loop.call_at(when, fut.set_result, 1)
    try:
        async with asyncio.timeout_at(when):
            print("value", await fut)
    except TimeoutError:
        print("TimeoutError")

    print("-- outside cancel at the expiry")
    when = loop.time() + 0.01

    async def inner_task():
        try:
            async with asyncio.timeout_at(when) as t:
                await asyncio.sleep(10)
        except TimeoutError:
            print("TimeoutError")
        except asyncio.CancelledError:
            print("CancelledError, expired:", t.expired())
            raise

    task = asyncio.create_task(inner_task())
    loop.call_at(when, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("task cancelled:", task.cancelled())


asyncio.run(main())
