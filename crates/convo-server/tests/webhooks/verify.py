"""An independent check of a signed delivery (issue 15): NexHealth's scheme with Python's
standard library, the way a NexHealth receiver checks it, and Standard Webhooks' with the
specification's own package (PyPI standardwebhooks). Reads a JSON document on stdin:
{"secret": ..., "headers": {...}, "body_b64": ...}; prints "ok" or fails."""
import base64
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook

doc = json.load(sys.stdin)
secret, headers = doc["secret"], doc["headers"]
body = base64.b64decode(doc["body_b64"])

signed = f"{headers['timestamp']}.{base64.b64encode(body).decode('ascii')}"
expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
if not hmac.compare_digest(expected, headers["signature"].strip()):
    sys.exit("NexHealth signature does not verify")

payload = Webhook(secret).verify(body, headers)
for key in ("resource_type", "event_name", "subdomain"):
    if key not in payload:
        sys.exit(f"payload lacks {key}")
print("ok")
