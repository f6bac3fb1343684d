"""What people script Kafka load with: a confluent-kafka producer loop.

Usage: python_produce.py BOOTSTRAP TOPIC COUNT RATE SIZE
RATE 0 means as fast as possible. Same messages as loadgen: SIZE random
bytes and an 8-byte big-endian send-time header (ns). Paced by sending the
messages due every millisecond, like the raw Rust loop.
"""

import os
import struct
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count, rate, size = sys.argv[1:6]
count, rate, size = int(count), float(rate), int(size)

pool = os.urandom(max(4 << 20, 4 * size) + size)
acked = 0
failed = 0


def on_delivery(err, _msg):
    global acked, failed
    if err is None:
        acked += 1
    else:
        failed += 1


producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
offset = 0
sent = 0
start = time.monotonic()
while sent < count:
    due = count if rate <= 0 else min(count, int((time.monotonic() - start) * rate))
    while sent < due:
        if offset + size > len(pool):
            offset = 0
        payload = pool[offset : offset + size]
        offset += size + 1
        header = struct.pack(">Q", time.time_ns())
        try:
            producer.produce(
                topic,
                value=payload,
                headers=[("loadgen-send-ns", header)],
                on_delivery=on_delivery,
            )
            sent += 1
        except BufferError:
            producer.poll(0.1)
            continue
        if rate <= 0:
            producer.poll(0)
    producer.poll(0)
    if rate > 0 and sent < count:
        time.sleep(0.001)
producer.flush(30)
print(f"acked={acked} failed={failed}")
