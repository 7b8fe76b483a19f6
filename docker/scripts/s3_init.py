"""Create MIA's buckets on the S3-compatible store if they are missing (compose ``s3-init``).

Buckets: ``MIA_S3_BUCKETS`` (comma-separated): MLflow's artifacts, Airflow's task logs and
``backup.bucket`` of params.yaml. The endpoint and keys are boto3's own variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``). Idempotent; retries while the store starts.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    """Create every missing bucket; non-zero exit when the store never answers."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    names = [b.strip() for b in os.environ.get("MIA_S3_BUCKETS", "").split(",") if b.strip()]
    if not names:
        print("error: MIA_S3_BUCKETS is empty; list the buckets to create", file=sys.stderr)
        return 2
    s3 = boto3.client("s3")
    for attempt in range(30):
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except (BotoCoreError, ClientError) as exc:
            print(f"s3-init: store not ready ({exc}); retry {attempt + 1}/30", file=sys.stderr)
            time.sleep(2)
    else:
        print(f"error: {os.environ.get('AWS_ENDPOINT_URL', 'AWS S3')} never answered; check "
              "AWS_ENDPOINT_URL and the keys", file=sys.stderr)
        return 1
    for name in names:
        if name in existing:
            print(f"s3-init: bucket {name} exists")
            continue
        s3.create_bucket(Bucket=name)
        print(f"s3-init: bucket {name} created")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
