"""A bearer token on Keras Tuner's chief/worker gRPC calls (distributed.py says when it is used).

Imports grpc, which comes with TensorFlow: only a distributed search loads this module.
"""
from __future__ import annotations

import collections
import hmac

import grpc

KEY = "authorization"


class RequireToken(grpc.ServerInterceptor):
    """Server side: a call without "authorization: Bearer <token>" is answered UNAUTHENTICATED and never
    reaches the oracle (every oracle call is unary-unary)."""

    def __init__(self, secret: str, env_name: str):
        self.expected = f"Bearer {secret}".encode()
        message = f"this tuning chief needs the token in {env_name} (set it to the chief's value)"
        self.deny = grpc.unary_unary_rpc_method_handler(
            lambda request, context: context.abort(grpc.StatusCode.UNAUTHENTICATED, message))

    def intercept_service(self, continuation, details):
        given = dict(details.invocation_metadata or ()).get(KEY, "")
        if hmac.compare_digest(str(given).encode(), self.expected):
            return continuation(details)
        return self.deny


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class SendToken(grpc.UnaryUnaryClientInterceptor):
    """Client side: adds the bearer token to every call's metadata."""

    def __init__(self, secret: str):
        self.header = (KEY, f"Bearer {secret}")

    def intercept_unary_unary(self, continuation, details, request):
        metadata = [*(details.metadata or ()), self.header]
        return continuation(_CallDetails(details.method, details.timeout, metadata, details.credentials,
                                         getattr(details, "wait_for_ready", None),
                                         getattr(details, "compression", None)), request)
