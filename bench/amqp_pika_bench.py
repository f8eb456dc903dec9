#!/usr/bin/python3
"""The Python service of the RabbitMQ benchmark (bench/amqp_bench.c runs it).

It does what bench/amqp_bench.c's raw and sluice clients do, the usual way
for each library, with the same settings: persistent 512-byte messages with
the CloudEvents headers and properties sluice writes, published to the
benchmark's exchange with publisher confirms, then consumed from its quorum
queue with a prefetch and one ack per message.

  aio-pika  publisher_confirms=True; publishes gathered WINDOW at a time
            (each publish awaits its confirm); queue.iterator() with
            `async with message.process()`.
  pika      BlockingConnection; confirm_delivery() (each basic_publish waits
            for its confirm); basic_consume with basic_ack per message.

Prints one line: "tp PUB_PER_S CON_PER_S PEAK_RSS_KB", or in latency mode
"lat P50_NS P99_NS COUNTED PEAK_RSS_KB". Uses Debian's python3-aio-pika and
python3-pika.
"""
import argparse
import asyncio
import resource
import struct
import sys
import time
import uuid

DATA_BYTES = 512


def body(seq, mono_ns):
    return struct.pack("<QQ", seq, mono_ns) + b"x" * (DATA_BYTES - 16)


def headers(msg_id):
    return {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": msg_id,
        "cloudEvents:source": "/bench",
        "cloudEvents:type": "bench.event",
        "cloudEvents:time": "2024-01-01T00:00:00.000Z",
    }


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- aio-pika ------------------------------------------------------------


async def aio_connect(a):
    import aio_pika

    conn = await aio_pika.connect(a.url)
    ch = await conn.channel(publisher_confirms=True)
    await ch.set_qos(prefetch_count=a.prefetch)
    ex = await ch.get_exchange(a.exchange, ensure=False)
    q = await ch.get_queue(a.queue, ensure=False)
    return aio_pika, conn, ex, q


def aio_message(aio_pika, seq, mono_ns):
    mid = str(uuid.uuid4())
    return aio_pika.Message(
        body(seq, mono_ns),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers(mid),
        message_id=mid,
        type="bench.event",
        app_id="/bench",
        timestamp=int(time.time()),
    )


async def aio_publish(aio_pika, ex, a, n):
    t0 = time.monotonic()
    i = 0
    while i < n:
        k = min(a.window, n - i)
        await asyncio.gather(*[
            ex.publish(aio_message(aio_pika, i + j, 0), routing_key=a.routing_key)
            for j in range(k)
        ])
        i += k
    return n / (time.monotonic() - t0)


async def aio_consume(q, n, lat=None):
    t0 = time.monotonic()
    got = 0
    last = t0
    async with q.iterator() as it:
        async for message in it:
            async with message.process():
                if lat is not None:
                    seq, stamp = struct.unpack_from("<QQ", message.body)
                    lat.append(time.monotonic_ns() - stamp)
                got += 1
                last = time.monotonic()
            if got >= n:
                break
    return n / (last - t0)


async def aio_main(a):
    aio_pika, conn, ex, q = await aio_connect(a)
    try:
        if a.mode == "throughput":
            pub = await aio_publish(aio_pika, ex, a, a.events)
            con = await aio_consume(q, a.events)
            print("tp %.1f %.1f %d" % (pub, con, peak_rss_kb()))
            return
        n = int(a.rate * a.seconds)
        lat = []
        consumer = asyncio.ensure_future(aio_consume(q, n, lat))
        await asyncio.sleep(0.2)
        period = 1e9 / a.rate
        start = time.monotonic_ns() + 1_000_000
        pending = set()
        for i in range(n):
            sched = int(start + i * period)
            now = time.monotonic_ns()
            if now < sched:
                await asyncio.sleep((sched - now) / 1e9)
            pending.add(asyncio.ensure_future(ex.publish(
                aio_message(aio_pika, i, sched), routing_key=a.routing_key)))
            if len(pending) >= a.window:
                _, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
        await consumer
        report_latency(lat[n // 5:])
    finally:
        await conn.close()


def report_latency(v):
    v.sort()
    if not v:
        print("lat 0 0 0 %d" % peak_rss_kb())
        return

    def pct(p):
        r = max(1, min(len(v), int(p / 100.0 * len(v) + 0.999999)))
        return v[r - 1]

    print("lat %d %d %d %d" % (pct(50), pct(99), len(v), peak_rss_kb()))


# ---- pika ------------------------------------------------------------------


def pika_main(a):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(a.url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_qos(prefetch_count=a.prefetch)
    n = a.events
    t0 = time.monotonic()
    for i in range(n):
        mid = str(uuid.uuid4())
        ch.basic_publish(
            a.exchange, a.routing_key, body(i, 0),
            pika.BasicProperties(delivery_mode=2, headers=headers(mid),
                                 message_id=mid, type="bench.event",
                                 app_id="/bench",
                                 timestamp=int(time.time())))
    pub = n / (time.monotonic() - t0)

    state = {"got": 0, "last": 0.0}

    def on_message(channel, method, properties, payload):
        channel.basic_ack(method.delivery_tag)
        state["got"] += 1
        state["last"] = time.monotonic()
        if state["got"] >= n:
            channel.stop_consuming()

    t0 = time.monotonic()
    ch.basic_consume(a.queue, on_message)
    ch.start_consuming()
    con = n / (state["last"] - t0)
    conn.close()
    print("tp %.1f %.1f %d" % (pub, con, peak_rss_kb()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--client", choices=["aio-pika", "pika"], required=True)
    p.add_argument("--mode", choices=["throughput", "latency"],
                   default="throughput")
    p.add_argument("--url", required=True)
    p.add_argument("--exchange", required=True)
    p.add_argument("--routing-key", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--prefetch", type=int, default=500)
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=3)
    a = p.parse_args()
    if a.client == "pika":
        if a.mode != "throughput":
            sys.exit("pika: throughput only")
        pika_main(a)
    else:
        asyncio.run(aio_main(a))


if __name__ == "__main__":
    main()
