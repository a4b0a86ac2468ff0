"""The rlif reward plugin server: go-plugin's handshake, health and controller services,
automatic mTLS, and the RewardPlugin service around a user's score function."""

from __future__ import annotations

import base64
import datetime
import json
import math
import os
import signal
import sys
import threading
import traceback
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ._pb import goplugin_pb2, goplugin_pb2_grpc, reward_pb2, reward_pb2_grpc

#: Version of the reward plugin protocol (plugins/proto/reward.proto).
PROTOCOL_VERSION = 1
#: go-plugin's handshake cookie: the host puts KEY=VALUE in the plugin's environment.
MAGIC_COOKIE_KEY = "RLIF_REWARD_PLUGIN"
MAGIC_COOKIE_VALUE = "9c1e0d2a-rlif-reward-v1"
#: go-plugin's core protocol version (the first field of the handshake line).
_CORE_PROTOCOL_VERSION = 1
#: The health service name go-plugin's host checks.
_HEALTH_SERVICE = "plugin"

_UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


@dataclass
class Arg:
    """One argument of a plugin (shown by the host; defaults fill missing args)."""

    name: str
    type: str = "string"  # "string", "number", "int", "bool", "list" or "table"
    default: Any = None
    description: str = ""
    required: bool = False


class Completion:
    """One completion. The per-token arrays (one entry per generated token) are
    read-only sequences: logprob, raw_logprob, entropy, self_certainty."""

    __slots__ = ("_pb",)

    def __init__(self, pb: reward_pb2.Completion):
        self._pb = pb

    text = property(lambda self: self._pb.text)
    tokens = property(lambda self: self._pb.tokens)
    prompt_tokens = property(lambda self: self._pb.prompt_tokens)
    finish_reason = property(lambda self: self._pb.finish_reason)  # "eos", "length" or "stop"
    logprob = property(lambda self: self._pb.logprob)
    raw_logprob = property(lambda self: self._pb.raw_logprob)
    entropy = property(lambda self: self._pb.entropy)
    self_certainty = property(lambda self: self._pb.self_certainty)
    # token_ends[i]: byte offset in text (UTF-8) where token i's text ends; empty when unknown.
    token_ends = property(lambda self: self._pb.token_ends)

    @property
    def self_certainty_mean(self) -> float:
        """Mean per-token self-certainty (Intuitor's reward); 0 for an empty completion."""
        sc = self._pb.self_certainty
        return math.fsum(sc) / len(sc) if len(sc) else 0.0

    def __repr__(self) -> str:
        return f"Completion(text={self.text[:40]!r}, tokens={len(self.tokens)}, finish_reason={self.finish_reason!r})"


@dataclass
class Group:
    """The completions sampled from one prompt, with the dataset row's fields."""

    prompt: str
    fields: Mapping[str, str]
    completions: Sequence[Completion] = field(default_factory=list)


# A score function: per group (batch=False) fn(group, args) -> [float | None, ...];
# per batch (batch=True) fn(groups, args) -> [[float | None, ...], ...].
ScoreFn = Callable[[Any, dict], Any]


def _to_score(v: Any) -> reward_pb2.Score:
    if v is None:
        return reward_pb2.Score(not_applicable=True)
    return reward_pb2.Score(value=float(v))


class _RewardService(reward_pb2_grpc.RewardPluginServicer):
    def __init__(self, fn: ScoreFn, name: str, summary: str, args: Sequence[Arg],
                 configure: Optional[Callable[[dict], None]], batch: bool):
        self._fn, self._name, self._summary = fn, name, summary
        self._schema = list(args)
        self._configure = configure
        self._batch = batch
        self._args: Optional[dict] = None
        self._lock = threading.Lock()

    def Info(self, request, context):
        return reward_pb2.InfoResponse(
            name=self._name,
            protocol_version=PROTOCOL_VERSION,
            summary=self._summary,
            args=[reward_pb2.Arg(name=a.name, type=a.type,
                                 default_json="" if a.default is None else json.dumps(a.default),
                                 description=a.description, required=a.required)
                  for a in self._schema],
        )

    def _resolve(self, given: dict) -> dict:
        """Checks args against the declared schema (if any) and fills defaults."""
        if not self._schema:
            return dict(given)
        known = {a.name: a for a in self._schema}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown arg(s) {', '.join(unknown)} (known: {', '.join(known)})")
        out = {}
        for a in self._schema:
            if a.name in given:
                out[a.name] = given[a.name]
            elif a.required:
                raise ValueError(f"missing required arg {a.name!r}")
            else:
                out[a.name] = a.default
        return out

    def Configure(self, request, context):
        try:
            given = json.loads(request.args_json or "{}")
            if not isinstance(given, dict):
                raise ValueError("args must be a table")
            args = self._resolve(given)
            if self._configure is not None:
                self._configure(args)
        except Exception as e:  # the plugin's own validation: report, don't crash
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(e).__name__}: {e}")
        with self._lock:
            self._args = args
        return reward_pb2.ConfigureResponse()

    def Score(self, request, context):
        with self._lock:
            args = self._args
        if args is None:
            args = self._resolve({})
        groups = [Group(prompt=g.prompt, fields=dict(g.fields),
                        completions=[Completion(c) for c in g.completions])
                  for g in request.groups]
        try:
            if self._batch:
                result = list(self._fn(groups, args))
            else:
                result = [self._fn(g, args) for g in groups]
            resp = reward_pb2.ScoreResponse()
            for scores in result:
                resp.groups.add().scores.extend(_to_score(v) for v in scores)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        return resp


class _Controller(goplugin_pb2_grpc.GRPCControllerServicer):
    def __init__(self, done: threading.Event):
        self._done = done

    def Shutdown(self, request, context):
        self._done.set()
        return goplugin_pb2.Empty()


class _Stdio(goplugin_pb2_grpc.GRPCStdioServicer):
    """go-plugin's host asks for the plugin's forwarded stdout/stderr; a Python plugin
    writes straight to its stderr (which the host reads), so the stream stays empty."""

    def __init__(self, done: threading.Event):
        self._done = done

    def StreamStdio(self, request, context):
        while not self._done.is_set() and context.is_active():
            self._done.wait(1.0)
        return iter(())


def _self_signed_cert():
    """A fresh key and self-signed certificate for localhost, as go-plugin's AutoMTLS
    expects from a plugin: (key PEM, cert PEM, cert DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rlif plugin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def _watch_parent(done: threading.Event) -> None:
    """Stops the plugin when the host dies without stopping it."""
    parent = os.getppid()
    while not done.wait(1.0):
        if os.getppid() != parent:
            done.set()


def serve(fn: ScoreFn, *, name: Optional[str] = None, summary: str = "", args: Sequence[Arg] = (),
          configure: Optional[Callable[[dict], None]] = None, batch: bool = False, mtls: bool = True) -> None:
    """Serves fn as an rlif reward plugin until the host stops it.

    fn(group, args) returns one score per completion of the group: a float, or None for
    "not applicable". With batch=True, fn(groups, args) returns one such list per group.
    args is the reward's ``args`` table; when ``args`` (the schema) is declared, unknown
    keys are rejected and defaults filled in. configure(args), if given, validates the
    args once (raise to reject them). mtls=False refuses go-plugin's automatic mTLS (the
    host must then set DisableMTLS for this plugin).

    Nothing may be printed to stdout before serve(): go-plugin reads its handshake line
    there. After the handshake, sys.stdout is redirected to stderr.
    """
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(f"{name} is an rlif reward plugin: name it in a [[rewards]] table "
                         f"(plugin = \"path\"), and rlif runs it; it is not meant to be run by hand.\n")
        sys.exit(1)
    versions = [v for v in os.environ.get("PLUGIN_PROTOCOL_VERSIONS", str(PROTOCOL_VERSION)).split(",") if v]
    if str(PROTOCOL_VERSION) not in versions:
        sys.stderr.write(f"{name}: the host speaks reward protocol version(s) {','.join(versions)}, "
                         f"this SDK speaks {PROTOCOL_VERSION}\n")
        sys.exit(1)
    # Ctrl-C in a terminal reaches the whole process group; the host stops its plugins itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_UNLIMITED)
    reward_pb2_grpc.add_RewardPluginServicer_to_server(
        _RewardService(fn, name, summary, args, configure, batch), server)
    goplugin_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(done), server)
    goplugin_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(done), server)
    health_servicer = health.HealthServicer()
    health_servicer.set(_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    cert_field = ""
    client_cert = os.environ.get("PLUGIN_CLIENT_CERT", "")
    if client_cert and mtls:
        key_pem, cert_pem, cert_der = _self_signed_cert()
        creds = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_cert.encode(),
                                            require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", creds)
        cert_field = base64.b64encode(cert_der).decode().rstrip("=")
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.stderr.write(f"{name}: cannot listen on 127.0.0.1\n")
        sys.exit(1)
    server.start()

    out = sys.stdout
    out.write(f"{_CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|tcp|127.0.0.1:{port}|grpc|{cert_field}\n")
    out.flush()
    sys.stdout = sys.stderr  # later prints must not reach go-plugin's stdout reader

    threading.Thread(target=_watch_parent, args=(done,), daemon=True).start()
    done.wait()
    server.stop(grace=0.2).wait()
