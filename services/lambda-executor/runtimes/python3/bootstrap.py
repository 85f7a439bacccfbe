"""minilambda python3 runtime: loads the handler once, then serves invocations.

Started by the executor as `python3 -I -S -B bootstrap.py` inside the sandbox. It speaks the
framed protocol of runtimes/provided/README.md on fd 3; fds 1 and 2 are the function's log
(whatever the handler prints), never the result.
"""
import os
import sys
import time

FD = 3
TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")


def _fast_codec():
    """loads/dumps on CPython's C accelerator: `import json` costs 7 ms of a cold start (re,
    enum, collections); this is what json uses underneath, with the same results."""
    import _json

    class Options:
        strict = True
        object_hook = object_pairs_hook = None
        parse_float, parse_int = float, int
        parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                          "NaN": float("nan")}.__getitem__

    scan = _json.make_scanner(Options())

    def default(o):
        raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

    def loads(data):
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        start = len(text) - len(text.lstrip(" \t\n\r"))
        try:
            value, end = scan(text, start)
            if not text[end:].strip(" \t\n\r"):
                return value
        except (StopIteration, SystemError):  # 3.11's scanner needs json loaded to explain
            pass
        import json  # invalid input: let json raise its precise JSONDecodeError

        return json.loads(text)

    def dumps(value, allow_nan=True):
        encode = _json.make_encoder({}, default, _json.encode_basestring_ascii, None, ":", ",",
                                    False, False, allow_nan)
        return "".join(encode(value, 0))

    return loads, dumps


try:
    json_loads, json_dumps = _fast_codec()
except (ImportError, AttributeError, TypeError):  # not CPython: the real thing
    import json

    json_loads, json_dumps = json.loads, json.dumps


GeneratorType = type((lambda: (yield))())  # types.GeneratorType without importing types


class InitError(Exception):
    """The handler could not be loaded; reported to the executor as init_error."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


class Context:
    """What the handler gets as `context` (AWS-style names too)."""

    def __init__(self, header):
        self.function_name = header.get("function_name", "")
        self.function_version = header.get("function_version", "")
        self.invocation_id = header.get("invocation_id", "")
        self.aws_request_id = self.invocation_id
        self.memory_limit_in_mb = header.get("memory_limit_in_mb", 0)
        self._deadline_ms = header.get("deadline_ms", 0)
        self._stream = {}

    def set_stream_metadata(self, content_type=None, status_code=None, headers=None,
                            cookies=None):
        """For a streaming (generator) handler, before its first item: the stream's content
        type (default application/x-ndjson) and, for an HTTP caller, status, headers, cookies."""
        if content_type is not None:
            self._stream["content_type"] = str(content_type)
        http = self._stream.setdefault("http", {}) if (
            status_code is not None or headers is not None or cookies is not None) else None
        if status_code is not None:
            http["statusCode"] = int(status_code)
        if headers is not None:
            http["headers"] = {str(k): str(v) for k, v in dict(headers).items()}
        if cookies is not None:
            http["cookies"] = [str(c) for c in cookies]

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    @property
    def remaining_time_in_millis(self):
        return self.get_remaining_time_in_millis()


def read_exact(n):
    parts = []
    while n:
        chunk = os.read(FD, min(n, 1 << 20))
        if not chunk:
            os._exit(0)  # the executor closed the channel: the instance is being retired
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_frame():
    return read_exact(int.from_bytes(read_exact(4), "big"))


def send(header, body=b""):
    data = memoryview(b"".join((len(header).to_bytes(4, "big"), header,
                                len(body).to_bytes(4, "big"), body)))
    while data:
        data = data[os.write(FD, data):]


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the function closed or broke its own stream
            pass


def error_body(exc, error_type=None):
    """{errorType, errorMessage, stackTrace} of an exception, frames of this file left out."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    print("[ERROR] %s: %s" % (error_type or type(exc).__name__, exc), file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(spec):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise InitError("Runtime.MalformedHandlerName",
                        "Bad handler '%s': expected module.function" % spec)
    module_name = module_name.replace("/", ".")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except SyntaxError as e:
        raise InitError("Runtime.UserCodeSyntaxError",
                        "Syntax error in module '%s': %s" % (module_name, e)) from e
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError",
                        "Unable to import module '%s': %s" % (module_name, e)) from e
    except Exception as e:
        raise InitError("Runtime.InitError", "%s: %s" % (type(e).__name__, e)) from e
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise InitError("Runtime.HandlerNotFound",
                        "Handler '%s' missing on module '%s'" % (function_name, module_name))
    return handler


def stream_item(item):
    """The bytes of one yielded item: bytes as they are, str as UTF-8, else one NDJSON record."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    return json_dumps(item, allow_nan=False).encode() + b"\n"


def stream(gen, context):
    """Sends a generator's items as chunks, each as soon as it is yielded; returns the final
    (header, body). The stream message goes out lazily, so metadata set before the first item
    counts."""
    started = False

    def start():
        meta = {"type": "stream",
                "content_type": context._stream.get("content_type", "application/x-ndjson")}
        if "http" in context._stream:
            meta["http"] = context._stream["http"]
        send(json_dumps(meta).encode())

    while True:
        try:
            item = next(gen)
        except StopIteration:
            break
        except Exception as e:
            error_type = None
            break_with = e
        else:
            try:
                data = stream_item(item)
                break_with = None
            except (TypeError, ValueError, RecursionError) as e:
                error_type, break_with = "Runtime.MarshalError", e
        if break_with is not None:  # before the first item: an ordinary error, no stream
            body = error_body(break_with, error_type)
            if error_type:
                body["errorMessage"] = "Unable to marshal a streamed item: %s" % break_with
                gen.close()
            return b'{"type":"error"}', json_dumps(body).encode()
        if not started:
            start()
            started = True
        if data:
            send(b'{"type":"chunk"}', data)
    if not started:
        start()
    return b'{"type":"result"}', b""


def invoke(handler, header, body):
    """Runs one invocation; returns (header, body) of the reply."""
    try:
        event = json_loads(body) if body else None
    except ValueError as e:
        return b'{"type":"error"}', json_dumps(error_body(e, "Runtime.UnmarshalError")).encode()
    context = Context(header)
    try:
        result = handler(event, context)
    except Exception as e:
        return b'{"type":"error"}', json_dumps(error_body(e)).encode()
    if isinstance(result, GeneratorType):
        return stream(result, context)
    try:
        return b'{"type":"result"}', json_dumps(result, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as e:
        body = error_body(e, "Runtime.MarshalError")
        body["errorMessage"] = "Unable to marshal response: %s" % e
        return b'{"type":"error"}', json_dumps(body).encode()


def stem_wait():
    """A stem cell (`bootstrap.py --stem`, docs/sandbox.md "Stem cells"): started ahead with no
    code and a generic environment; waits for "specialise", then takes the function's
    environment (replacing, not merging: nothing of the stem's stays in os.environ) and
    handler. The executor has mounted the code at /var/task by then."""
    global TASK_ROOT
    import importlib  # what load_handler needs, loaded ahead

    send(b'{"type":"stem_ready"}')
    while True:
        header = json_loads(read_frame())
        body = read_frame()
        if header.get("type") == "specialise":
            break
    env = json_loads(body)
    os.environ.clear()
    for kv in env:
        key, _, value = kv.partition("=")
        os.environ[key] = value
    TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    importlib.invalidate_caches()


def main():
    if sys.argv[1:] == ["--stem"]:
        stem_wait()
    # -I -S: no site.py, so no host dist-packages/site-packages on sys.path (the sandbox also
    # masks those dirs): only the standard library and the function's own code import.
    sys.path.insert(0, TASK_ROOT)
    sys.dont_write_bytecode = True
    # Line-buffered so what was printed before a timeout or crash still reaches the log.
    sys.stdout.reconfigure(line_buffering=True)
    os.chdir(TASK_ROOT)
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitError as e:
        body = error_body(e, e.error_type)
        flush_output()
        send(b'{"type":"init_error"}', json_dumps(body).encode())
        return 1
    flush_output()
    send(b'{"type":"ready"}')
    while True:
        header = json_loads(read_frame())
        body = read_frame()
        if header.get("type") != "invoke":
            continue
        reply, payload = invoke(handler, header, body)
        flush_output()
        send(reply, payload)


if __name__ == "__main__":
    sys.exit(main())
