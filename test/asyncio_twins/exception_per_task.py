# Twin of twins.cpp's exception_per_task: each task's handled exception is
# its own across awaits (`except: await ...; raise`), nested handlers unwind
# in order, and a cancel inside a handler replaces the handled exception.
import asyncio
import sys


async def rethrows(name, delays):
    try:
        raise RuntimeError(name + "'s own error")
    except RuntimeError:
        for d in delays:
            await asyncio.sleep(d)
            print(name, "handles", repr(str(sys.exception())))
        raise


async def nested(name):
    try:
        raise RuntimeError(name + " outer")
    except RuntimeError as outer:
        await asyncio.sleep(0)
        try:
            raise ValueError(name + " inner")
        except ValueError:
            await asyncio.sleep(0)
            print(name, "inner handler sees", str(sys.exception()))
        await asyncio.sleep(0)
        print(name, "outer handler sees", str(sys.exception()))


async def cancelled_in_handler(blocker):
    try:
        raise RuntimeError("handled")
    except RuntimeError:
        await blocker
        raise


async def main():
    print("-- rethrow after awaits")
    a = asyncio.create_task(rethrows("A", [0, 0]))
    b = asyncio.create_task(rethrows("B", [0]))
    for t in (a, b):
        try:
            await t
        except RuntimeError as e:
            print("task ended with:", str(e))
    print("-- nested handlers")
    await asyncio.gather(nested("X"), nested("Y"))
    print("-- cancel inside a handler")
    blocker = asyncio.get_running_loop().create_future()
    c = asyncio.create_task(cancelled_in_handler(blocker))
    await asyncio.sleep(0)
    c.cancel()
    try:
        await c
    except asyncio.CancelledError:
        print("cancelled:", c.cancelled(), "blocker cancelled:", blocker.cancelled())


asyncio.run(main())
