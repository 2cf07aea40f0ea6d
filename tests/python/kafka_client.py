"""An independent Kafka client for oceanflow's Kafka tests and bench (confluent-kafka + pyarrow).

Subcommands (all print one JSON document on stdout):

  create   --brokers B --topic T --partitions N        create a topic (admin API)
  produce  --brokers B --topic T --partitions N --format json|csv|arrow_ipc --input ROWS.ndjson
           [--bad-every K] [--rows-per-message R] [--skip S] [--limit L] [--batch-messages M]
           rows (one JSON object per line, tutorial columns) → messages; message i goes to
           partition i % N. json: an object per message, every 5th message an array of up to
           R rows; csv: a line per message, every 5th message up to R lines; arrow_ipc: an IPC
           stream of R rows per message. --bad-every K inserts a malformed message after every
           K-th good one (cycling: invalid JSON / non-numeric value / missing station).
  consume  --brokers B --topic T --count N [--timeout S]  read N messages from the start
  consume  --brokers B --topic T --to-end [--timeout S]   read every message up to the end
           offsets at the start of the read
  offsets  --brokers B --topic T --partitions N --group G  end offsets and the group's commits
"""

import argparse
import io
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CSV_COLUMNS = [
    "timestamp", "station_id", "latitude", "longitude",
    "temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen", "species",
]


def create(args):
    admin = AdminClient({"bootstrap.servers": args.brokers})
    futures = admin.create_topics([NewTopic(args.topic, args.partitions, 1)], request_timeout=15)
    for fut in futures.values():
        fut.result(timeout=30)
    # Wait until the metadata shows every partition.
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(args.topic, timeout=5)
        t = md.topics.get(args.topic)
        if t is not None and t.error is None and len(t.partitions) == args.partitions:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"topic {args.topic} not visible with {args.partitions} partitions")
    print(json.dumps({"created": args.topic, "partitions": args.partitions}))


def csv_field(v):
    if v is None:
        return ""
    s = str(v)
    if any(c in s for c in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def csv_line(row):
    return ",".join(csv_field(row.get(c)) for c in CSV_COLUMNS)


def ipc_payload(rows):
    import pyarrow as pa

    def col(name):
        return [r.get(name) for r in rows]

    batch = pa.record_batch(
        [
            pa.array(
                [r["timestamp_us"] for r in rows], type=pa.timestamp("us", tz="UTC")
            ),
            pa.array(col("station_id"), type=pa.string()),
            pa.array(col("latitude"), type=pa.float64()),
            pa.array(col("longitude"), type=pa.float64()),
            pa.array(col("temperature_c"), type=pa.float64()),
            pa.array(col("salinity_psu"), type=pa.float64()),
            pa.array(col("depth_m"), type=pa.float64()),
            pa.array(col("dissolved_oxygen"), type=pa.float64()),
            pa.array(col("species"), type=pa.string()),
        ],
        names=CSV_COLUMNS,
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


BAD_KINDS = ["malformed", "non_numeric", "missing_station"]


def bad_payload(kind, fmt, row):
    if kind == "malformed":
        return b"{this is not json" if fmt != "csv" else b"too,few,fields"
    if kind == "non_numeric":
        r = dict(row, temperature_c="warm")
    else:
        r = dict(row, station_id=None)
    if fmt == "csv":
        return csv_line(r).encode()
    return json.dumps(r).encode()


def produce(args):
    rows = []
    with open(args.input) as f:
        for i, line in enumerate(f):
            if i < args.skip:
                continue
            if args.limit is not None and len(rows) >= args.limit:
                break
            rows.append(json.loads(line))
    producer = Producer(
        {
            "bootstrap.servers": args.brokers,
            "linger.ms": 20,
            # tansu 0.6 answers a fetch that starts inside a record batch with the *next*
            # batch (seen with this client and with rdkafka alike), so a consumer resuming
            # mid-batch would skip messages. Tests that resume pass --batch-messages 1.
            "batch.num.messages": args.batch_messages,
            "queue.buffering.max.messages": 1000000,
            "queue.buffering.max.kbytes": 1048576,
            "enable.idempotence": False,
        }
    )
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(str(err))

    # Messages in order; message i → partition i % N (offsets are then reproducible).
    payloads = []
    i = 0
    fmt = args.format
    r = args.rows_per_message
    bad = {"malformed": 0, "non_numeric": 0, "missing_station": 0}
    good_messages = 0
    while i < len(rows):
        if fmt == "arrow_ipc":
            chunk = rows[i : i + r]
            payloads.append(ipc_payload(chunk))
        elif len(payloads) % 5 == 4 and r > 1:
            chunk = rows[i : i + r]
            if fmt == "json":
                payloads.append(json.dumps(chunk).encode())
            else:
                payloads.append("\n".join(csv_line(x) for x in chunk).encode() + b"\n")
        else:
            chunk = rows[i : i + 1]
            if fmt == "json":
                payloads.append(json.dumps(chunk[0]).encode())
            else:
                payloads.append(csv_line(chunk[0]).encode())
        i += len(chunk)
        good_messages += 1
        if args.bad_every and good_messages % args.bad_every == 0:
            kind = BAD_KINDS[sum(bad.values()) % len(BAD_KINDS)]
            bad[kind] += 1
            payloads.append(bad_payload(kind, fmt, chunk[0]))
    for n, payload in enumerate(payloads):
        while True:
            try:
                producer.produce(args.topic, payload, partition=n % args.partitions,
                                 on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise SystemExit(f"produce failed: {remaining} undelivered, errors {failures[:3]}")
    print(json.dumps({"messages": len(payloads), "rows": len(rows), "bad": bad,
                      "bytes": sum(len(p) for p in payloads)}))


def consume(args):
    # Assigned partitions, no group: nothing to join or leave.
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": "oceanflow-tests-reader",
            "enable.auto.commit": False,
        }
    )
    md = consumer.list_topics(args.topic, timeout=10)
    partitions = sorted(md.topics[args.topic].partitions)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    # --to-end: the high watermark of each partition now; done once every one is reached.
    pending = {}
    if args.to_end:
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
            if high > low:
                pending[p] = high

    out = []

    def more():
        return bool(pending) if args.to_end else len(out) < args.count

    deadline = time.time() + args.timeout
    while more() and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        if msg.partition() in pending and msg.offset() + 1 >= pending[msg.partition()]:
            del pending[msg.partition()]
        headers = {k: (v.decode("utf-8", "replace") if v is not None else None)
                   for k, v in (msg.headers() or [])}
        out.append(
            {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": msg.key().decode("utf-8", "replace") if msg.key() else None,
                "value": msg.value().decode("utf-8", "replace") if msg.value() else None,
                "headers": headers,
            }
        )
    consumer.close()
    if args.to_end and pending:
        raise SystemExit(f"partitions {sorted(pending)} not read to their end in {args.timeout} s")
    print(json.dumps({"messages": out}))


def offsets(args):
    consumer = Consumer(
        {"bootstrap.servers": args.brokers, "group.id": args.group, "enable.auto.commit": False}
    )
    tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    committed = [tp.offset for tp in consumer.committed(tps, timeout=10)]
    consumer.close()
    print(json.dumps({"end": ends, "committed": committed}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["create", "produce", "consume", "offsets"])
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--format", default="json")
    p.add_argument("--input")
    p.add_argument("--bad-every", type=int, default=0)
    p.add_argument("--rows-per-message", type=int, default=1)
    p.add_argument("--batch-messages", type=int, default=10000)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--limit", type=int)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--group")
    p.add_argument("--to-end", action="store_true")
    args = p.parse_args()
    {"create": create, "produce": produce, "consume": consume, "offsets": offsets}[
        args.command
    ](args)


if __name__ == "__main__":
    sys.exit(main())
