# Twin of twins.cpp's queue_cancel: test_queues.py's test_get_cancelled_race
# and test_put_cancelled_race, plus woken-then-cancelled getters and putters.
import asyncio


async def main():
    q = asyncio.Queue()

    async def getter(name):
        try:
            item = await q.get()
        except asyncio.CancelledError:
            print(f"{name} cancelled")
            raise
        print(f"{name} got {item}")

    print("-- get race")
    t1 = asyncio.create_task(getter("g1"))
    t2 = asyncio.create_task(getter("g2"))
    await asyncio.sleep(0)
    t1.cancel()
    await asyncio.sleep(0)
    await q.put("a")
    await asyncio.gather(t1, t2, return_exceptions=True)

    print("-- woken getter cancelled")
    t1 = asyncio.create_task(getter("g1"))
    t2 = asyncio.create_task(getter("g2"))
    await asyncio.sleep(0)
    q.put_nowait("b")
    t1.cancel()
    await asyncio.gather(t1, t2, return_exceptions=True)

    print("-- put race")
    q = asyncio.Queue(maxsize=1)

    async def putter(item):
        try:
            await q.put(item)
        except asyncio.CancelledError:
            print(f"put {item} cancelled")
            raise
        print(f"put {item}")

    pa = asyncio.create_task(putter("a"))
    pb = asyncio.create_task(putter("b"))
    pc = asyncio.create_task(putter("X"))
    await asyncio.sleep(0)
    pc.cancel()
    await asyncio.sleep(0)
    print("get", q.get_nowait())
    await asyncio.sleep(0)
    print("get", q.get_nowait())
    await asyncio.gather(pa, pb, pc, return_exceptions=True)

    print("-- woken putter cancelled")
    q.put_nowait(0)
    p1 = asyncio.create_task(putter(1))
    p2 = asyncio.create_task(putter(2))
    await asyncio.sleep(0)
    print("get", q.get_nowait())
    p1.cancel()
    await asyncio.gather(p1, p2, return_exceptions=True)
    print("get", q.get_nowait())


asyncio.run(main())
