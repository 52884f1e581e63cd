# Twin of twins.cpp's semaphore_cancel: test_locks.py's
# test_acquire_cancel_before_awoken and test_acquire_hang, with the order of
# events.
import asyncio


async def main():
    sem = asyncio.Semaphore(0)

    async def acq(name):
        try:
            await sem.acquire()
        except asyncio.CancelledError:
            print(f"{name} cancelled")
            raise
        print(f"{name} acquired")

    ts = [asyncio.create_task(acq(f"t{i}")) for i in range(1, 5)]
    await asyncio.sleep(0)
    ts[0].cancel()
    ts[1].cancel()
    sem.release()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    print("done:", " ".join(str(int(t.done())) for t in ts), "locked:", int(sem.locked()))
    ts[3].cancel()
    await asyncio.sleep(0)
    print("t4 cancelled:", int(ts[3].cancelled()))

    # A unit released to a waiter that is cancelled before it runs goes on.
    a = asyncio.create_task(acq("a"))
    b = asyncio.create_task(acq("b"))
    await asyncio.sleep(0)
    sem.release()
    a.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    print("value:", sem._value)


asyncio.run(main())
