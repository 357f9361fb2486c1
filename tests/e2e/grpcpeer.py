#!/usr/bin/python3
# A gRPC server and client for the HTTP/2 routing tests, without protoc:
# generic handlers, messages are raw bytes.
#   grpcpeer.py serve NAME HOST:PORT          the kb.Echo service below
#   grpcpeer.py call TARGET METHOD ARG [k=v]  one call: the reply, or
#                                             "status CODE: DETAILS" (exit 3)
#   grpcpeer.py mixed TARGET N HEADER=VALUE   N unary calls on one channel,
#                                             every other one with the
#                                             header; prints who answered
# Methods: Unary (NAME: ARG), Stream (ARG messages "NAME i"), Fail
# (INVALID_ARGUMENT "NAME says no"), Slow (sleeps ARG seconds), Meta (the
# x-dev metadata seen), Count (Unary calls served so far), Big (echoes
# ARG random bytes back: the client prints "big N same"), Flood (ARG
# messages of 64 KiB).
import os
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "kb.Echo"


def serve(name, addr):
    lock = threading.Lock()
    count = [0]

    def unary(req, ctx):
        with lock:
            count[0] += 1
        return b"%s: %s" % (name.encode(), req)

    def stream(req, ctx):
        for i in range(int(req)):
            yield b"%s %d" % (name.encode(), i)

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "%s says no" % name)

    def slow(req, ctx):
        time.sleep(float(req))
        return b"%s: slept" % name.encode()

    def meta(req, ctx):
        md = dict(ctx.invocation_metadata())
        return ("%s: x-dev=%s" % (name, md.get("x-dev", "-"))).encode()

    def big(req, ctx):
        return req

    def flood(req, ctx):
        chunk = b"f" * 65536
        for i in range(int(req)):
            yield chunk

    def cnt(req, ctx):
        with lock:
            return str(count[0]).encode()

    h = grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Meta": grpc.unary_unary_rpc_method_handler(meta),
        "Count": grpc.unary_unary_rpc_method_handler(cnt),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "Flood": grpc.unary_stream_rpc_method_handler(flood),
    })
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    srv.add_generic_rpc_handlers((h,))
    if srv.add_insecure_port(addr) == 0:
        sys.exit("cannot listen on %s" % addr)
    srv.start()
    print("listening on %s" % addr, flush=True)
    srv.wait_for_termination()


def call(target, method, arg, kv):
    md = [tuple(x.split("=", 1)) for x in kv]
    timeout = None
    for k, v in list(md):
        if k == "deadline":
            timeout = float(v)
            md.remove((k, v))
    with grpc.insecure_channel(target) as ch:
        path = "/%s/%s" % (SERVICE, method)
        try:
            if method == "Big":
                data = os.urandom(int(arg))
                f = ch.unary_unary(path)
                got = f(data, metadata=md, timeout=timeout or 30)
                print("big %d %s" % (len(got), "same" if got == data else "differs"))
            elif method == "Stream":
                f = ch.unary_stream(path)
                for m in f(arg.encode(), metadata=md, timeout=timeout or 10):
                    print(m.decode())
            else:
                f = ch.unary_unary(path)
                print(f(arg.encode(), metadata=md, timeout=timeout or 10).decode())
        except grpc.RpcError as e:
            print("status %s: %s" % (e.code().name, e.details()))
            sys.exit(3)


def mixed(target, n, kv):
    k, v = kv.split("=", 1)
    got = {}
    with grpc.insecure_channel(target) as ch:
        f = ch.unary_unary("/%s/Unary" % SERVICE)
        futs = []
        for i in range(n):
            md = [(k, v)] if i % 2 == 0 else []
            futs.append((i, f.future(b"m%d" % i, metadata=md, timeout=20)))
        for i, fu in futs:
            who = fu.result().decode().split(":")[0]
            tag = "with" if i % 2 == 0 else "without"
            got[(tag, who)] = got.get((tag, who), 0) + 1
    for (tag, who), c in sorted(got.items()):
        print("%s %s %d" % (tag, who, c))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "serve":
        serve(a[1], a[2])
    elif a[0] == "call":
        call(a[1], a[2], a[3], a[4:])
    elif a[0] == "mixed":
        mixed(a[1], int(a[2]), a[3])
    else:
        sys.exit("usage: grpcpeer.py serve|call|mixed ...")
