# Twin of twins.cpp's task_group_failure: a TaskGroup child fails while
# another is being cancelled; then an outside cancel races a child failure
# (test_taskgroups.py's test_taskgroup_15).
import asyncio


async def main():
    print("-- failure during cancellation")
    try:
        async with asyncio.TaskGroup() as g:
            async def slow():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    print("slow: cancelled, cleaning up")
                    await asyncio.sleep(0.001)
                    print("slow: cleanup fails")
                    raise RuntimeError("cleanup failed")

            async def fast():
                await asyncio.sleep(0.001)
                print("fast: fails")
                raise RuntimeError("fast failed")

            g.create_task(slow())
            g.create_task(fast())
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                print("body: cancelled")
                raise
    except* RuntimeError as eg:
        print("group:", ", ".join(str(e) for e in eg.exceptions))
    print("cancelling:", asyncio.current_task().cancelling())

    print("-- outside cancel, then a child fails")

    async def runner():
        try:
            async with asyncio.TaskGroup() as g:
                async def crash():
                    await asyncio.sleep(0.05)
                    print("child: crashes")
                    raise RuntimeError("crash")

                g.create_task(crash())
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    print("body: cancelled from outside")
                    await asyncio.sleep(0.2)
                    raise
        except* RuntimeError as eg:
            print("runner: group of", ", ".join(str(e) for e in eg.exceptions),
                  "cancelling:", asyncio.current_task().cancelling())
            raise

    r = asyncio.create_task(runner())
    await asyncio.sleep(0.005)
    r.cancel()
    try:
        await r
    except BaseException as e:
        print("runner ended with", type(e).__name__)


asyncio.run(main())
