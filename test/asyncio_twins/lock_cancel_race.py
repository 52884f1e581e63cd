# Twin of twins.cpp's lock_cancel_race: test_locks.py's test_cancel_race and
# test_cancel_release_race, printing the order of events.
import asyncio


async def cancel_race():
    lock = asyncio.Lock()

    async def lockit(name, blocker):
        await lock.acquire()
        print(f"{name} acquired")
        try:
            if blocker is not None:
                await blocker
        finally:
            lock.release()
            print(f"{name} released")

    fa = asyncio.get_running_loop().create_future()
    ta = asyncio.create_task(lockit("A", fa))
    await asyncio.sleep(0)
    tb = asyncio.create_task(lockit("B", None))
    await asyncio.sleep(0)
    tc = asyncio.create_task(lockit("C", None))
    await asyncio.sleep(0)
    fa.set_result(None)
    tb.cancel()
    await asyncio.sleep(0)
    print(f"locked={lock.locked()} a_done={ta.done()} b_cancelled={tb.cancelled()}")
    await tc


async def cancel_release_race():
    lock = asyncio.Lock()
    order = []

    async def lockit(name):
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            print(f"{name} cancelled")
            raise
        print(f"{name} acquired")

    await lock.acquire()
    t1 = asyncio.create_task(lockit("t1"))
    t2 = asyncio.create_task(lockit("t2"))
    t3 = asyncio.create_task(lockit("t3"))
    await asyncio.sleep(0)

    def trigger():
        t1.cancel()
        lock.release()

    asyncio.get_running_loop().call_soon(trigger)
    try:
        await t1
    except asyncio.CancelledError:
        print("t1 awaited: CancelledError")
    print(f"t2 done={t2.done()} t3 done={t3.done()}")
    t3.cancel()
    await asyncio.sleep(0)
    print(f"t3 cancelled={t3.cancelled()}")


async def main():
    print("-- cancel_race")
    await cancel_race()
    print("-- cancel_release_race")
    await cancel_release_race()


asyncio.run(main())
