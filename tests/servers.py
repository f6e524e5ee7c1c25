"""Small real HTTP servers on 127.0.0.1 that tests talk to instead of live services."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def send_json(
    handler: BaseHTTPRequestHandler, status: int, reply: Any, headers: dict[str, str] | None = None
) -> None:
    """Answer the request `handler` serves with `reply` as JSON (bytes are sent as they are: a broken body)."""
    data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class CompletionServer:
    """A small OpenAI-compatible chat-completions server on 127.0.0.1 with scripted answers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if server.fail_next:
                    server.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                prompt = body["messages"][0]["content"]
                info = prompt.split("INFORMATION TO EXTRACT:\n", 1)[1].split("\n\nINSTRUCTIONS:", 1)[0]
                reply = {
                    "choices": [{"message": {"role": "assistant", "content": f"ANSWER({info})"}}],
                    "usage": {"total_tokens": 42},
                }
                send_json(self, 200, reply)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


ChatReplyScript = str | dict[str, Any] | bytes
"""A scripted assistant reply: its text, a whole message object (content and/or tool_calls), or the raw bytes
of the whole response body (to send what no JSON encoder would)."""


class ChatScriptServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that plays a scripted model per task.

    The task is the one whose question the conversation's first user message starts with; the reply is
    `scripts[task_id][n]`, n being the number of assistant messages already in the conversation (so the
    server follows whatever the client sends back). `episode_scripts[(task_id, e)]` replaces the script for
    that task's e-th episode (from 1; an episode is counted when its first request is answered).

    Faults: `failures` are (status, headers) answers served, in order, before any scripted reply; tasks in
    `down` always get 503; tasks in `refuse` always get that (status, headers, error message), like a 400 for an
    over-long context; with `hold_after` set, the first request of every episode after that many is held
    until `release` is set and then refused (the client is expected to have been killed meanwhile); the
    request `hold_at` names (task_id, turn) is held until `release` is set and then gets its scripted reply.
    `holding` is set whenever a request is being held.
    """

    def __init__(self, questions: dict[str, str], scripts: dict[str, list[ChatReplyScript]]) -> None:
        self.questions = dict(questions)
        self.scripts = dict(scripts)
        self.episode_scripts: dict[tuple[str, int], list[ChatReplyScript]] = {}
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.down: set[str] = set()
        self.refuse: dict[str, tuple[int, dict[str, str], str]] = {}
        self.hold_after: int | None = None
        self.hold_at: tuple[str, int] | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.log: list[dict[str, Any]] = []
        self.episodes: dict[str, int] = {}
        self._started = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, reply = server._answer(body, self.headers.get("Authorization"))
                send_json(self, status, reply, headers)

            def log_message(self, *args: Any) -> None:
                return

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a held request's client was killed: writing the answer fails, as it should

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def task_of(self, messages: list[dict[str, Any]]) -> str | None:
        """The task whose question opens the first user message."""
        first = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        return next((tid for tid, q in self.questions.items() if first.startswith(q)), None)

    def requests_per_task(self) -> dict[str, int]:
        """HTTP requests received per task id, failures included."""
        counts: dict[str, int] = {}
        for entry in self.log:
            counts[entry["task_id"]] = counts.get(entry["task_id"], 0) + 1
        return counts

    def _answer(self, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        messages = body.get("messages", [])
        task_id = self.task_of(messages)
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        entry = {"task_id": task_id, "turn": turn, "auth": auth, "at": time.monotonic(), "body": body}
        with self._lock:
            self.log.append(entry)
            if self.failures:
                status, headers = self.failures.pop(0)
                entry["status"] = status
                return status, headers, {"error": {"message": f"scripted failure {status}"}}
            hold = turn == 0 and self.hold_after is not None and self._started >= self.hold_after
        if task_id is None:
            entry["status"] = 400
            return 400, {}, {"error": {"message": "no scripted task has this question"}}
        if task_id in self.down:
            entry["status"] = 503
            return 503, {}, {"error": {"message": "down for this task"}}
        if task_id in self.refuse:
            status, headers, message = self.refuse[task_id]
            entry["status"] = status
            return status, headers, {"error": {"message": message}}
        if self.hold_at == (task_id, turn):
            entry["held"] = True
            self.holding.set()
            self.release.wait(60)
        if hold:
            self.holding.set()
            self.release.wait(60)
            entry["status"] = 503
            return 503, {}, {"error": {"message": "held"}}
        with self._lock:
            if turn == 0:
                self._started += 1
                self.episodes[task_id] = self.episodes.get(task_id, 0) + 1
            episode = self.episodes.get(task_id, 1)
        script = self.episode_scripts.get((task_id, episode), self.scripts[task_id])
        if turn >= len(script):
            entry["status"] = 400
            return 400, {}, {"error": {"message": f"script of {task_id} has no reply {turn}"}}
        scripted = script[turn]
        if isinstance(scripted, bytes):
            entry["status"] = 200
            return 200, {}, scripted
        message = {"role": "assistant", **(scripted if isinstance(scripted, dict) else {"content": scripted})}
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        completion_tokens = len(str(message.get("content") or "")) // 4 + 1
        entry["status"] = 200
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{len(self.log)}",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_chars // 4,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_chars // 4 + completion_tokens,
                },
            },
        )

    def close(self) -> None:
        """Stop serving (releasing any held request)."""
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
