# Twin of twins.cpp's gather_cancel: cancelling a gather (test_cancel_gather_*)
# and a gather cancelled while its child is finishing.
import asyncio


async def main():
    async def child(name):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as e:
            print(f"{name} cancelled: {e.args[0] if e.args else ''}")
            await asyncio.sleep(0)
            print(f"{name} ends")
            raise

    print("-- cancel the waiter")
    c1 = asyncio.create_task(child("c1"))
    c2 = asyncio.create_task(child("c2"))

    async def waiter():
        try:
            await asyncio.gather(c1, c2, return_exceptions=True)
        except asyncio.CancelledError as e:
            print(f"gather: CancelledError {e.args[0] if e.args else ''}")
            raise

    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    w.cancel("stop")
    try:
        await w
    except asyncio.CancelledError:
        print("waiter cancelled")

    print("-- child finishing")
    fut = asyncio.get_running_loop().create_future()

    async def waiter2():
        try:
            r = await asyncio.gather(fut)
            print(f"value {r[0]}")
        except asyncio.CancelledError:
            print("CancelledError")
            raise

    w = asyncio.create_task(waiter2())
    await asyncio.sleep(0)
    fut.set_result(3)
    print("cancel returns", w.cancel())
    try:
        await w
    except asyncio.CancelledError:
        print("waiter cancelled")

    print("-- first exception")
    async def fail(name, delay):
        await asyncio.sleep(delay)
        print(f"{name} fails")
        raise RuntimeError(name)

    a = asyncio.create_task(fail("a", 0.05))
    b = asyncio.create_task(fail("b", 0.001))
    try:
        await asyncio.gather(a, b)
    except RuntimeError as e:
        print(f"gather raised {e}; a done={a.done()}")
    try:
        await a
    except RuntimeError as e:
        print(f"a raised {e}")


asyncio.run(main())
