#!/usr/bin/env python3
"""A stand-in for a hosted model provider, for `make demo`: an OpenAI-style
/v1/chat/completions endpoint on loopback that records every request body it receives (to show
what left the gateway) and answers by repeating the user's last message, so that the client sees
whether the gateway restored pseudonymized values on the way back.

usage: demo-upstream.py PORT_FILE LOG_FILE   (binds 127.0.0.1 on a free port, writes it to
PORT_FILE, appends each received body as one JSON line to LOG_FILE)
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    log_file = None

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with open(self.log_file, "ab") as log:
            log.write(body.replace(b"\n", b" ") + b"\n")
        try:
            request = json.loads(body)
            last = request["messages"][-1]["content"]
            if isinstance(last, list):
                last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
        except (ValueError, KeyError, IndexError, TypeError):
            self.send_error(400, "expected a chat completion request")
            return
        reply = {
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "demo"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "You said: " + str(last)},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet: the demo prints what matters
        pass


def main():
    port_file, log_file = sys.argv[1], sys.argv[2]
    Handler.log_file = log_file
    server = HTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
