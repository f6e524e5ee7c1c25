"""The frame protocol and the host client, without any sandbox: wire format, caps, deadlines, dead agents."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from miroenv.sandbox import agent
from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.client import AgentClient, AgentGoneError, PipeTransport, Transport
from miroenv.sandbox.framing import (
    HEADER,
    TRUNCATION_MARKER,
    FrameDecoder,
    FrameError,
    HeadTail,
    decode_output,
    encode_frame,
)


def test_host_and_agent_frames_are_byte_identical() -> None:
    meta = {"op": "python", "id": 7, "timeout": 1.5, "text": "é\u2028"}
    body = b"\x00\xffcode"
    assert encode_frame(meta, body) == agent._pack(meta, body)


def test_agent_reader_decodes_host_frames_split_anywhere() -> None:
    frames = [({"op": "ping", "id": 1}, b""), ({"op": "write", "id": 2, "path": "a"}, b"x" * 70000)]
    wire = b"".join(encode_frame(m, b) for m, b in frames)
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: [os.write(w, wire[i : i + 7]) for i in range(0, len(wire), 7)])
    writer.start()
    reader = agent._Reader(r)
    got = [reader.read_frame(), reader.read_frame()]
    writer.join()
    os.close(w)
    assert reader.read_frame() is None
    os.close(r)
    assert got == frames


def test_decoder_streams_a_body_in_pieces() -> None:
    decoder = FrameDecoder()
    wire = encode_frame({"id": 1}, b"abcdef")
    decoder.feed(wire[:5])
    assert decoder.next_header() is None
    decoder.feed(wire[5:-3])
    assert decoder.next_header() == ({"id": 1}, 6)
    assert decoder.take_body(6) == b"abc"
    decoder.feed(wire[-3:])
    assert decoder.take_body(3) == b"def"


def test_decoder_rejects_garbage() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADER.pack(1 << 30, 0))
    with pytest.raises(FrameError):
        decoder.next_header()
    decoder = FrameDecoder()
    decoder.feed(HEADER.pack(3, 0) + b"[1]")
    with pytest.raises(FrameError):
        decoder.next_header()


def test_head_tail_keeps_both_ends_and_counts_the_cut() -> None:
    buffer = HeadTail(10)
    for _ in range(1000):
        buffer.feed(b"0123456789")
    head, tail, dropped = buffer.parts()
    assert head == b"01234" and tail == b"56789" and dropped == 10000 - 10
    assert buffer.text() == "01234" + TRUNCATION_MARKER.format(dropped=9990) + "56789"


def test_head_tail_cut_from_upstream_moves_to_the_tail() -> None:
    buffer = HeadTail(100)
    buffer.feed(b"start")
    buffer.cut(500)
    buffer.feed(b"end")
    assert buffer.text() == "start" + TRUNCATION_MARKER.format(dropped=500) + "end"


def test_head_tail_memory_is_bounded() -> None:
    buffer = HeadTail(1000)
    chunk = b"z" * 65536
    for _ in range(200):
        buffer.feed(chunk)
        assert len(buffer.head) + len(buffer.tail) <= 1000 + 2 * 500 + 65536 + 65536


def test_output_decoding_never_raises() -> None:
    assert decode_output(b"ok\xff\xfe\x00end") == "ok\ufffd\ufffd\ufffdend"


class _FakeAgent:
    """An agent simulated over real pipes, to drive the client into failure modes."""

    def __init__(self) -> None:
        host_to_agent = os.pipe()
        agent_to_host = os.pipe()
        self.agent_in = host_to_agent[0]
        self.agent_out = agent_to_host[1]
        self.transport: Transport = PipeTransport(host_to_agent[1], agent_to_host[0])
        self.client = AgentClient(self.transport, name="fake", max_output=64, hard_margin=0.3)

    def say(self, data: bytes) -> None:
        os.write(self.agent_out, data)

    def hello(self) -> None:
        self.say(encode_frame({"op": "hello", "version": 1, "workdir": "/w"}))
        self.client.handshake(1.0)

    def close(self) -> None:
        for fd in (self.agent_in, self.agent_out):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.client.close()


@pytest.fixture
def fake() -> object:
    agent_sim = _FakeAgent()
    yield agent_sim
    agent_sim.close()


def test_client_hard_deadline_when_the_agent_hangs(fake: _FakeAgent) -> None:
    fake.hello()
    start = time.monotonic()
    with pytest.raises(AgentGoneError, match="hard deadline"):
        fake.client.run_python("1", timeout=0.2)
    assert time.monotonic() - start < 0.2 + 1.0 + 0.3 + 0.5
    with pytest.raises(SandboxError, match="no longer usable"):
        fake.client.run_python("1", timeout=0.2)


def test_client_detects_a_dead_agent(fake: _FakeAgent) -> None:
    fake.hello()
    os.close(fake.agent_out)
    with pytest.raises(AgentGoneError, match="exited"):
        fake.client.ping()
    assert not fake.client.alive()


def test_client_rejects_a_reply_to_another_request(fake: _FakeAgent) -> None:
    fake.hello()
    fake.say(encode_frame({"id": 99, "ok": True}))
    with pytest.raises(AgentGoneError, match="reply to request 99"):
        fake.client.ping()


def test_client_caps_a_flood_even_from_a_misbehaving_agent(fake: _FakeAgent) -> None:
    fake.hello()
    body = b"a" * 50_000 + b"b" * 50_000
    streams = {"stdout": [len(body), 0, 0], "stderr": [0, 0, 0]}
    reply = encode_frame({"id": 1, "ok": True, "exit_code": 0, "streams": streams}, body)
    writer = threading.Thread(target=fake.say, args=(reply,))
    writer.start()
    result = fake.client.run_python("print('x')", timeout=1)
    writer.join()
    assert result.truncated
    assert result.stdout.startswith("a" * 32) and result.stdout.endswith("b" * 32)
    assert len(result.stdout) < 200


def test_client_rejects_a_body_that_does_not_match_its_description(fake: _FakeAgent) -> None:
    fake.hello()
    fake.say(encode_frame({"id": 1, "ok": True, "streams": {"stdout": [5, 0, 0]}}, b"abc"))
    with pytest.raises(AgentGoneError):
        fake.client.run_command("true", timeout=1)


def test_client_refuses_a_wrong_greeting(fake: _FakeAgent) -> None:
    fake.say(encode_frame({"op": "hello", "version": 999}))
    with pytest.raises(AgentGoneError, match="unexpected greeting"):
        fake.client.handshake(1.0)


def test_agent_source_fits_in_one_command_line_argument() -> None:
    source = Path(agent.__file__).read_text(encoding="utf-8")
    assert len(source.encode()) < 128 * 1024, "MAX_ARG_STRLEN: the agent is passed as `python -c <source>`"
    json.dumps({"source": source})
