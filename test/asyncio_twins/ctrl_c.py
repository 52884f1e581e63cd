# Twin of twins.cpp's ctrl_c: asyncio.run's Ctrl-C (3.11+). The first SIGINT
# cancels the main task; run() then cancels the tasks left, and raises
# KeyboardInterrupt once they unwound.
import asyncio
import os
import signal


async def worker(name):
    try:
        await asyncio.sleep(60)
    finally:
        print(name, "unwinds", flush=True)


async def main():
    w1 = asyncio.create_task(worker("w1"))
    w2 = asyncio.create_task(worker("w2"))
    await asyncio.sleep(0)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        print("main cancelled", flush=True)
        raise
    finally:
        print("main unwinds", flush=True)


try:
    asyncio.run(main())
    print("run returned")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
