#!/usr/bin/env python3
"""NATS nkeys and JWT credentials for the NATS security test, with
python3-cryptography (Ed25519) only: the nsc and nk tools are not packaged
in Debian.

  nats_nkeys.py user DIR
      a user nkey: DIR/user.seed (its seed), DIR/user.pub (public key)
  nats_nkeys.py creds DIR
      an operator, a system account, an account with JetStream and a
      user signed by them: DIR/operator.jwt, DIR/sys.pub, DIR/sys.jwt,
      DIR/account.pub, DIR/account.jwt, DIR/user.creds
      (the user JWT and its seed), for a nats-server in operator mode with
      a memory resolver preloaded with the account

nkey encoding (github.com/nats-io/nkeys): base32 without padding of
prefix byte(s) + key + CRC-16/XMODEM (little endian). JWT (github.com/
nats-io/jwt v2): base64url header {"typ":"JWT","alg":"ed25519-nkey"},
claims, and the issuer's Ed25519 signature of "header.claims".
"""
import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

PREFIX_SEED = 18 << 3
PREFIX = {"operator": 14 << 3, "account": 0, "user": 20 << 3}


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def b32(raw):
    return base64.b32encode(raw).decode().rstrip("=")


def encode(raw):
    c = crc16(raw)
    return b32(raw + bytes([c & 0xFF, c >> 8]))


class Key:
    def __init__(self, kind):
        self.kind = kind
        self.priv = Ed25519PrivateKey.generate()
        self.seed_bytes = self.priv.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        pub = self.priv.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        p = PREFIX[kind]
        self.public = encode(bytes([p]) + pub)
        self.seed = encode(bytes([PREFIX_SEED | (p >> 5), (p & 31) << 3]) +
                           self.seed_bytes)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(issuer, subject, name, nats):
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {"jti": b32(os.urandom(32)), "iat": int(time.time()),
              "iss": issuer.public, "name": name, "sub": subject.public,
              "nats": nats}
    body = b64url(json.dumps(claims).encode())
    sig = issuer.priv.sign((header + "." + body).encode())
    return header + "." + body + "." + b64url(sig)


def write(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("user", "creds"):
        sys.exit(__doc__)
    out = sys.argv[2]
    if sys.argv[1] == "user":
        u = Key("user")
        write(os.path.join(out, "user.seed"), u.seed + "\n")
        write(os.path.join(out, "user.pub"), u.public + "\n")
        return
    op, acc, user = Key("operator"), Key("account"), Key("user")
    sys_acc = Key("account")  # the server's system account (JetStream)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                 "exports": -1, "wildcards": True, "conn": -1, "leaf": -1,
                 "mem_storage": -1, "disk_storage": -1, "streams": -1,
                 "consumer": -1}
    write(os.path.join(out, "operator.jwt"),
          jwt(op, op, "sluice-test", {"type": "operator", "version": 2}))
    write(os.path.join(out, "sys.pub"), sys_acc.public + "\n")
    write(os.path.join(out, "sys.jwt"),
          jwt(op, sys_acc, "SYS", {"type": "account", "version": 2}))
    write(os.path.join(out, "account.pub"), acc.public + "\n")
    write(os.path.join(out, "account.jwt"),
          jwt(op, acc, "app", {"limits": unlimited,
                               "default_permissions": {"pub": {}, "sub": {}},
                               "type": "account", "version": 2}))
    user_jwt = jwt(acc, user, "svc", {"pub": {}, "sub": {}, "subs": -1,
                                      "data": -1, "payload": -1,
                                      "type": "user", "version": 2})
    write(os.path.join(out, "user.creds"),
          "-----BEGIN NATS USER JWT-----\n" + user_jwt +
          "\n------END NATS USER JWT------\n\n"
          "-----BEGIN USER NKEY SEED-----\n" + user.seed +
          "\n------END USER NKEY SEED------\n")


if __name__ == "__main__":
    main()
