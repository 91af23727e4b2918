"""The seed's exposure consumer, rebuilt as the benchmark baseline: kafka-python consumer +
psycopg2 execute_batch into growthbook.experiment_exposures, committing offsets after each
batch. Settings: KAFKA_BOOTSTRAP, EXPOSURES_TOPIC, KAFKA_GROUP, DATABASE_URL, BATCH_SIZE.
It stops after STOP_AFTER rows when that is set (for the benchmark).
"""

import json
import os

import psycopg2
import psycopg2.extras
from kafka import KafkaConsumer

BATCH_SIZE = int(os.environ.get("BATCH_SIZE", "1000"))
STOP_AFTER = int(os.environ.get("STOP_AFTER", "0"))

consumer = KafkaConsumer(
    os.environ.get("EXPOSURES_TOPIC", "exposures"),
    bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"].split(","),
    group_id=os.environ.get("KAFKA_GROUP", "exposure-consumer-baseline"),
    enable_auto_commit=False,
    auto_offset_reset="earliest",
    value_deserializer=lambda v: json.loads(v),
)
db = psycopg2.connect(os.environ["DATABASE_URL"])

INSERT = """
INSERT INTO growthbook.experiment_exposures
  (exposure_id, ds_user_id, experiment_id, variation_id, ts, attributes, source)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exposure_id) DO NOTHING
"""

done = 0
while not STOP_AFTER or done < STOP_AFTER:
    polled = consumer.poll(timeout_ms=1000, max_records=BATCH_SIZE)
    rows = [
        (
            e["exposure_id"],
            e["ds_user_id"],
            e["experiment_id"],
            e["variation_id"],
            e["timestamp"],
            json.dumps(e["attributes"]),
            e["source"],
        )
        for records in polled.values()
        for e in (r.value for r in records)
    ]
    if not rows:
        continue
    with db.cursor() as cur:
        psycopg2.extras.execute_batch(cur, INSERT, rows)
    db.commit()
    consumer.commit()
    done += len(rows)
