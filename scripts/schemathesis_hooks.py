"""schemathesis hooks for memes (scripts/schemathesis.sh): sign payment webhooks as a provider
would, so that POST /v1/webhooks/topup is tested past its signature check.

A generated request that carries a Memes-Signature header gets a valid one for the exact
bytes sent (t=<now>,v1=<hex HMAC-SHA256 of "t.body">); one generated without the header
keeps going without it, and must be refused.
"""

import hashlib
import hmac
import os
import time

import requests
import schemathesis

SECRET = os.environ["MEMES_WEBHOOK_SECRET"].encode()


class SignWebhook(requests.auth.AuthBase):
    """Signs the prepared request, whose body is final."""

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        t = str(int(time.time())).encode()
        mac = hmac.new(SECRET, t + b"." + body, hashlib.sha256).hexdigest()
        request.headers["Memes-Signature"] = f"t={t.decode()},v1={mac}"
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    if case.operation.path == "/v1/webhooks/topup" and any(
        name.lower() == "memes-signature" for name in headers
    ):
        kwargs["auth"] = SignWebhook()
