"""The seed's exposure API, rebuilt as the benchmark baseline: FastAPI + kafka-python.

One producer for the process, acks=all, keyed by ds_user_id, answering 202 once the broker
acknowledged the event (the same promise the Rust exposure-api makes). Settings come from the
same environment variables as the Rust service: KAFKA_BOOTSTRAP, EXPOSURES_TOPIC, PORT.
"""

import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from fastapi import FastAPI
from kafka import KafkaProducer
from pydantic import BaseModel

TOPIC = os.environ.get("EXPOSURES_TOPIC", "exposures")

producer = KafkaProducer(
    bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"].split(","),
    acks="all",
    linger_ms=5,
    key_serializer=lambda k: k.encode(),
    value_serializer=lambda v: json.dumps(v).encode(),
)

app = FastAPI()


class Exposure(BaseModel):
    ds_user_id: str
    experiment_id: str
    variation_id: str
    attributes: Dict[str, Any] = {}
    source: str
    timestamp: Optional[datetime] = None


@app.post("/exposure", status_code=202)
def post_exposure(e: Exposure):
    now = datetime.now(timezone.utc)
    event = {
        "exposure_id": str(uuid.uuid4()),
        "ds_user_id": e.ds_user_id,
        "experiment_id": e.experiment_id,
        "variation_id": e.variation_id,
        "attributes": e.attributes,
        "source": e.source,
        "timestamp": (e.timestamp or now).isoformat(),
        "accepted_at": now.isoformat(),
    }
    producer.send(TOPIC, key=e.ds_user_id, value=event).get(timeout=10)
    return {"status": "accepted", "exposure_id": event["exposure_id"]}


@app.get("/health")
def health():
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning")
