"""The signaling benchmark's load generator: its own process, plain WebSocket clients.

Started by ``bench/signaling.py`` as ``python bench/loadgen.py CONFIG.json``; prints one
JSON object per line on stdout (``{"event": ...}``), the last being ``{"event": "done"}``.
Every wait is bounded (``timeout`` seconds per step), every phase bounded in count.

Two protocols:

- ``directcall``: this project's (docs/protocol.md). A call is invite → incoming →
  ringing → accept (SDP answer) → answered → candidates both ways → hangup → over.
- ``peer``: PeerJS's wire protocol (also spoken by ``bench/relay.py``). A call is OFFER →
  ANSWER → CANDIDATE frames both ways → LEAVE, each relayed by the server with ``src``.

Server CPU time is read from the server processes' own accounting (``/proc/<pid>``: the sum
of every thread's ``schedstat`` run time, in nanoseconds, falling back to
``stat`` utime+stime when a thread came and went), so the figures do not depend on how fast
this process is; Redis's own CPU comes from ``INFO cpu``. Memory is ``VmRSS``.

Phases (in order; a count of 0 skips one):

1. ``load``: full calls (with ``candidates`` candidate frames each way) started at
   ``rate`` per second, ``load_calls`` of them: latency invite→incoming delivered and
   accept→answered delivered (peer: OFFER→OFFER delivered, ANSWER→ANSWER delivered).
2. ``setup``: ``setup_calls`` calls without candidates at ``rate``: server CPU per call.
3. ``relay``: ``relay_calls`` established calls each relay ``relay_frames`` candidate frames
   each way: server CPU per relayed frame. Calls are set up before and torn down after the
   measured window.
4. ``max``: every pair (up to ``max_concurrency``) places full calls back to back for
   ``max_seconds``: sustained calls per second at saturation.
5. ``memory``: idle connections (signed in, then silent) opened up to each of ``idle_steps``:
   RSS growth of the server processes per connection, server CPU per sign-in, and (with
   ``idle_cpu_seconds``) server CPU per connection and second while all of them sit idle.
6. ``relay_idle``: the relay phase again (``idle_relay_frames``) with all idle connections
   still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict, deque
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

# A Chrome-like audio-only offer/answer (~1.9 KB): realistic frame sizes for the relays.
SDP_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 3f1c6b1e\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Qx8e\r\na=ice-pwd:5rYt1lXjJ0aTqFl3aW3mZ0wG\r\n"
    "a=ice-options:trickle\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:"
    "46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\n"
    "a=msid:3f1c6b1e 6a3b9a52-5d0e-4f43-9e6a-0c2a4f7b1d11\r\na=rtcp-mux\r\n"
    "a=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=ssrc:1001598312 cname:Zr0VwJ3fQ4xGm2Uq\r\n"
    "a=ssrc:1001598312 msid:3f1c6b1e 6a3b9a52-5d0e-4f43-9e6a-0c2a4f7b1d11\r\n"
)
SDP_OFFER += "a=x-padding:" + "0" * max(0, 1900 - len(SDP_OFFER) - 14) + "\r\n"
SDP_ANSWER = SDP_OFFER.replace("4611731400430051336", "8130402318848102531").replace(
    "a=setup:actpass", "a=setup:active"
)
CANDIDATE = {
    "candidate": (
        "candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 192.168.1.5 "
        "rport 54321 generation 0 ufrag Qx8e network-cost 999"
    ),
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "Qx8e",
}

now = time.monotonic


class CallFailed(Exception):
    """A call did not complete (error frame, closed socket or timeout)."""


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


# -- the server side's own accounting -----------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _stat_ns(pid: int) -> int:
    """utime + stime of the whole process (every thread, live or exited), in ns."""
    text = _read(f"/proc/{pid}/stat")
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _threads_ns(pid: int) -> dict[int, int]:
    """Run time of each live thread of ``pid`` (``schedstat``, ns)."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            times[int(tid)] = int(_read(f"/proc/{pid}/task/{tid}/schedstat").split()[0])
    return times


class CpuMeter:
    """CPU time spent by the server processes (and Redis) between ``start`` and ``stop``."""

    def __init__(self, pids: list[int], redis_url: str | None) -> None:
        self.pids = pids
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)

    def _redis_s(self) -> float | None:
        if self.redis is None:
            return None
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def sample(self) -> dict[str, Any]:
        return {
            "threads": {pid: _threads_ns(pid) for pid in self.pids},
            "stat": {pid: _stat_ns(pid) for pid in self.pids},
            "redis": self._redis_s(),
            "t": now(),
        }

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """Seconds of server CPU: per-thread ns when every thread lived through the window,
        else utime+stime (which counts exited threads too, to the clock tick).

        A thread can also start and end between the two samples, unseen by both: Django's
        ASGI handler runs each HTTP request in a thread of its own. So the per-thread sum
        is kept only while the processes' own utime+stime says no more than that (within
        two clock ticks per process).
        """
        total = main = 0
        precise = True
        for pid, threads in before["threads"].items():
            later = after["threads"][pid]
            if any(tid not in later for tid in threads):
                precise = False
                break
            total += sum(ns - threads.get(tid, 0) for tid, ns in later.items())
            # The process's first thread: the event loop (of uvicorn, daphne, Node).
            main += later.get(pid, 0) - threads.get(pid, 0)
        stat = sum(after["stat"][pid] - before["stat"][pid] for pid in before["stat"])
        tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        if precise and stat > total + 2 * tick * len(before["stat"]):
            precise = False  # threads came and went between the samples
        if not precise:
            total = stat
        redis_s = None
        if before["redis"] is not None and after["redis"] is not None:
            redis_s = after["redis"] - before["redis"]
        return {
            "cpu_s": total / 1e9,
            # Of which the main threads (None when a thread came and went).
            "main_cpu_s": main / 1e9 if precise else None,
            "redis_cpu_s": redis_s,
            "wall_s": after["t"] - before["t"],
            "precise": precise,
        }


def rss_kb(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# -- clients ------------------------------------------------------------------------------------


class Client:
    """One WebSocket client; frames are matched to waiters by a protocol-specific key."""

    def __init__(self, spec: dict[str, Any], protocol: str) -> None:
        self.id: str = spec["id"]
        self.spec = spec
        self.protocol = protocol
        self.ws: ClientConnection | None = None
        self.frames: dict[tuple, deque] = {}
        self.waiters: dict[tuple, asyncio.Future] = {}
        self.counts: dict[tuple, int] = defaultdict(int)
        self.count_waiters: dict[tuple, tuple[int, asyncio.Future]] = {}
        self.errors: list[Any] = []
        self.reader: asyncio.Task | None = None

    async def open(self, timeout: float) -> None:
        self.ws = await asyncio.wait_for(
            connect(
                self.spec["url"],
                origin=self.spec.get("origin"),
                compression=None,  # like PeerJS's server: no permessage-deflate anywhere
                ping_interval=None,
                open_timeout=timeout,
                max_size=2**20,
            ),
            timeout,
        )
        self.reader = asyncio.create_task(self._read())
        if self.protocol == "directcall":
            await self.send({"type": "auth", "token": self.spec["token"]})
            _, ready = await self.expect(("ready",), timeout)
            if ready.get("cuid") != self.id:
                raise CallFailed(f"{self.id}: unexpected ready {ready}")
        else:
            await self.expect(("OPEN",), timeout)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 10)
        if self.reader is not None:
            self.reader.cancel()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    def _key(self, frame: dict[str, Any]) -> tuple[tuple | None, bool]:
        """(key, counted): counted frames only increase a counter (candidates)."""
        kind = frame.get("type")
        if self.protocol == "directcall":
            if kind == "state":
                return ("state", frame.get("call_id"), frame.get("status")), False
            if kind == "candidates":
                return ("cand", frame.get("call_id")), True
            if kind == "invited":
                return ("invited", frame.get("ref")), False
            if kind in ("incoming", "ready"):
                return (kind,), False
            return None, False
        if kind == "CANDIDATE":
            return ("cand", frame.get("src"), frame["payload"].get("connectionId")), True
        if kind in ("OFFER", "ANSWER", "LEAVE"):
            return (kind, frame.get("src")), False
        if kind == "OPEN":
            return ("OPEN",), False
        return None, False

    async def _read(self) -> None:
        reason: Exception = CallFailed(f"{self.id}: connection closed")
        try:
            async for text in self.ws:
                t = now()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind in ("error", "ERROR", "ID-TAKEN"):
                    self.errors.append(frame)
                    self._fail_all(CallFailed(f"{self.id}: {frame}"))
                    continue
                key, counted = self._key(frame)
                if key is None:
                    continue
                if counted:
                    self.counts[key] += 1
                    waiter = self.count_waiters.get(key)
                    if waiter and self.counts[key] >= waiter[0] and not waiter[1].done():
                        waiter[1].set_result(t)
                    continue
                future = self.waiters.pop(key, None)
                if future is not None and not future.done():
                    future.set_result((t, frame))
                else:
                    self.frames.setdefault(key, deque()).append((t, frame))
        except websockets.ConnectionClosed as exc:
            reason = CallFailed(f"{self.id}: connection closed ({exc})")
        except asyncio.CancelledError:
            reason = CallFailed(f"{self.id}: reader stopped")
            raise
        finally:
            self._fail_all(reason)

    def _fail_all(self, exc: Exception) -> None:
        for future in list(self.waiters.values()):
            if not future.done():
                future.set_exception(exc)
        self.waiters.clear()
        for _, future in list(self.count_waiters.values()):
            if not future.done():
                future.set_exception(exc)
        self.count_waiters.clear()

    async def expect(self, key: tuple, timeout: float) -> tuple[float, dict[str, Any]]:
        """The next frame with ``key`` and when it was read: (monotonic time, frame)."""
        queue = self.frames.get(key)
        if queue:
            item = queue.popleft()
            if not queue:
                del self.frames[key]
            return item
        future = asyncio.get_running_loop().create_future()
        self.waiters[key] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallFailed(f"{self.id}: no {key} in {timeout}s") from None
        finally:
            if self.waiters.get(key) is future:
                del self.waiters[key]

    async def expect_count(self, key: tuple, target: int, timeout: float) -> None:
        """Wait until ``target`` counted frames with ``key`` arrived; then forget them."""
        try:
            if self.counts[key] < target:
                future = asyncio.get_running_loop().create_future()
                self.count_waiters[key] = (target, future)
                try:
                    await asyncio.wait_for(future, timeout)
                except TimeoutError:
                    raise CallFailed(
                        f"{self.id}: {self.counts[key]}/{target} of {key} in {timeout}s"
                    ) from None
                finally:
                    self.count_waiters.pop(key, None)
        finally:
            self.counts.pop(key, None)


# -- one call in each protocol ---------------------------------------------------------------------

_refs = itertools.count(1)


class Calls:
    """Places calls between a caller and a callee in the configured protocol."""

    def __init__(self, protocol: str, timeout: float) -> None:
        self.protocol = protocol
        self.timeout = timeout

    async def setup(
        self, caller: Client, callee: Client, box: dict | None = None
    ) -> tuple[str, float, float]:
        """Up to answered; return (call id, invite→incoming s, accept→answered s).

        ``box["call_id"]`` is set as soon as the call id is known (for clean-up).
        """
        box = {} if box is None else box
        t = self.timeout
        n = next(_refs)
        if self.protocol == "directcall":
            ref = f"r{n}"
            t0 = now()
            await caller.send(
                {
                    "type": "invite",
                    "ref": ref,
                    "receiver": callee.id,
                    "context": "Benchmark call",
                    "sdp": SDP_OFFER,
                }
            )
            # Both at once, so that an error frame to the caller ends the wait at once.
            (t_in, incoming), _ = await asyncio.gather(
                callee.expect(("incoming",), t), caller.expect(("invited", ref), t)
            )
            call_id = box["call_id"] = incoming["call_id"]
            await callee.send({"type": "ringing", "call_id": call_id})
            await caller.expect(("state", call_id, "ringing"), t)
            await callee.expect(("state", call_id, "ringing"), t)
            t1 = now()
            await callee.send({"type": "accept", "call_id": call_id, "sdp": SDP_ANSWER})
            t_ans, _ = await caller.expect(("state", call_id, "answered"), t)
            await callee.expect(("state", call_id, "answered"), t)
            return call_id, t_in - t0, t_ans - t1
        call_id = box["call_id"] = f"mc_{n}"
        t0 = now()
        await caller.send(
            {
                "type": "OFFER",
                "dst": callee.id,
                "payload": {
                    "sdp": {"type": "offer", "sdp": SDP_OFFER},
                    "type": "media",
                    "connectionId": call_id,
                    "metadata": {"context": "Benchmark call"},
                },
            }
        )
        t_in, _ = await callee.expect(("OFFER", caller.id), t)
        t1 = now()
        await callee.send(
            {
                "type": "ANSWER",
                "dst": caller.id,
                "payload": {
                    "sdp": {"type": "answer", "sdp": SDP_ANSWER},
                    "type": "media",
                    "connectionId": call_id,
                },
            }
        )
        t_ans, _ = await caller.expect(("ANSWER", callee.id), t)
        return call_id, t_in - t0, t_ans - t1

    async def candidates(
        self, caller: Client, callee: Client, call_id: str, count: int, timeout: float = 0
    ) -> None:
        """``count`` candidate frames (one candidate each) both ways; wait for delivery."""
        if count <= 0:
            return

        async def send_all(sender: Client, receiver: Client) -> None:
            if self.protocol == "directcall":
                frame = {"type": "candidates", "call_id": call_id, "candidates": [CANDIDATE]}
            else:
                frame = {
                    "type": "CANDIDATE",
                    "dst": receiver.id,
                    "payload": {"candidate": CANDIDATE, "type": "media", "connectionId": call_id},
                }
            for _ in range(count):
                await sender.send(frame)

        def key(receiver: Client, sender: Client) -> tuple:
            if self.protocol == "directcall":
                return ("cand", call_id)
            return ("cand", sender.id, call_id)

        await asyncio.gather(
            send_all(caller, callee),
            send_all(callee, caller),
            caller.expect_count(key(caller, callee), count, timeout or self.timeout),
            callee.expect_count(key(callee, caller), count, timeout or self.timeout),
        )

    async def hangup(self, caller: Client, callee: Client, call_id: str) -> None:
        t = self.timeout
        if self.protocol == "directcall":
            await caller.send({"type": "hangup", "call_id": call_id})
            await caller.expect(("state", call_id, "over"), t)
            await callee.expect(("state", call_id, "over"), t)
            return
        await caller.send({"type": "LEAVE", "dst": callee.id, "payload": {"connectionId": call_id}})
        await callee.expect(("LEAVE", caller.id), t)

    async def full(self, caller: Client, callee: Client, candidates: int) -> tuple[float, float]:
        box: dict[str, str] = {}
        try:
            call_id, lat_in, lat_ans = await self.setup(caller, callee, box)
            await self.candidates(caller, callee, call_id, candidates)
            await self.hangup(caller, callee, call_id)
        except (CallFailed, websockets.ConnectionClosed):
            await self.clean_up(caller, callee, box.get("call_id"))
            raise
        return lat_in, lat_ans

    async def clean_up(self, caller: Client, callee: Client, call_id: str | None) -> None:
        """After a failed call: end whatever the pair still has, forget its stale frames."""
        with contextlib.suppress(Exception):
            if self.protocol == "directcall":
                live = {call_id} if call_id else set()
                for key, queue in [*caller.frames.items(), *callee.frames.items()]:
                    if key[0] in ("incoming", "invited", "state"):
                        live.update(frame.get("call_id") for _, frame in queue)
                live.discard(None)
                for live_id in live:
                    await caller.send({"type": "hangup", "call_id": live_id})
                    await callee.send({"type": "hangup", "call_id": live_id})
            await asyncio.sleep(1.0)
        for client in (caller, callee):
            client.frames.clear()
            client.counts.clear()
            client.errors.clear()


# -- phases -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def open_all(specs: list[dict], protocol: str, timeout: float, width: int) -> list[Client]:
    clients = [Client(spec, protocol) for spec in specs]
    gate = asyncio.Semaphore(width)

    async def one(client: Client) -> None:
        async with gate:
            await client.open(timeout)

    results = await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await close_all(clients)
        raise RuntimeError(f"{len(failed)}/{len(clients)} connections failed: {failed[0]!r}")
    return clients


async def close_all(clients: list[Client]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(client: Client) -> None:
        async with gate:
            await client.close()

    await asyncio.gather(*(one(c) for c in clients))


async def paced(
    calls: Calls,
    pairs: list[tuple[Client, Client]],
    count: int,
    rate: float,
    candidates: int,
    deadline_s: float,
) -> dict[str, Any]:
    """``count`` calls started ``rate`` per second on free pairs; latency of each."""
    free: asyncio.Queue = asyncio.Queue()
    for pair in pairs:
        free.put_nowait(pair)
    lat_in: list[float] = []
    lat_ans: list[float] = []
    failures: list[str] = []
    tasks = []
    start = now()
    late = 0

    async def one(pair: tuple[Client, Client]) -> None:
        try:
            a, b = await calls.full(pair[0], pair[1], candidates)
            lat_in.append(a)
            lat_ans.append(b)
        except (CallFailed, websockets.ConnectionClosed) as exc:
            failures.append(str(exc))
        finally:
            free.put_nowait(pair)

    for i in range(count):
        due = start + i / rate
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        if now() - start > deadline_s:
            failures.append(f"phase deadline ({deadline_s}s) reached after {i} calls")
            break
        pair = await asyncio.wait_for(free.get(), calls.timeout)
        tasks.append(asyncio.create_task(one(pair)))
    await asyncio.gather(*tasks)
    wall = now() - start
    return {
        "calls": len(lat_in),
        "failed": len(failures),
        "failures": failures[:5],
        "offered_rate": rate,
        "achieved_rate": len(lat_in) / wall if wall > 0 else None,
        "late_starts": late,
        "invite_p50_ms": _ms(percentile(lat_in, 50)),
        "invite_p99_ms": _ms(percentile(lat_in, 99)),
        "accept_p50_ms": _ms(percentile(lat_ans, 50)),
        "accept_p99_ms": _ms(percentile(lat_ans, 99)),
        "invite_mean_ms": _ms(statistics.fmean(lat_in)) if lat_in else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def saturate(
    calls: Calls, pairs: list[tuple[Client, Client]], seconds: float, candidates: int
) -> dict[str, Any]:
    """Every pair places full calls back to back for ``seconds``; completed calls per second."""
    done = 0
    failures: list[str] = []
    lat_in: list[float] = []
    start = now()
    stop_at = start + seconds

    async def loop(pair: tuple[Client, Client]) -> None:
        nonlocal done
        while now() < stop_at:
            try:
                a, _ = await calls.full(pair[0], pair[1], candidates)
                done += 1
                lat_in.append(a)
            except (CallFailed, websockets.ConnectionClosed) as exc:
                failures.append(str(exc))
                return

    await asyncio.gather(*(loop(pair) for pair in pairs))
    wall = now() - start
    return {
        "calls": done,
        "failed": len(failures),
        "failures": failures[:5],
        "concurrency": len(pairs),
        "calls_per_s": done / wall if wall > 0 else None,
        "wall_s": wall,
        "invite_p50_ms": _ms(percentile(lat_in, 50)),
    }


async def run(config: dict[str, Any]) -> None:
    protocol = config["protocol"]
    timeout = float(config.get("timeout", 15))
    meter = CpuMeter(config["server_pids"], config.get("redis_url"))
    calls = Calls(protocol, timeout)
    hold = set(config.get("hold", []))

    async def wait_go(phase: str) -> None:
        """When asked to, tell the runner a phase is about to start and wait for its go."""
        if phase in hold:
            emit("hold", phase=phase)
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if not line:
                raise RuntimeError("the runner went away")

    t0 = now()
    load = await open_all(config["load"], protocol, timeout, width=64)
    pairs = list(zip(load[0::2], load[1::2], strict=True))
    emit("connected", clients=len(load), seconds=round(now() - t0, 3))
    try:
        # Warm-up (unmeasured): first DB connections, imports, JIT.
        warm = min(len(pairs), int(config.get("warmup_calls", 10)))
        await asyncio.gather(*(calls.full(a, b, 2) for a, b in pairs[:warm]))

        if config.get("load_calls"):
            before = meter.sample()
            result = await paced(
                calls,
                pairs,
                int(config["load_calls"]),
                float(config["rate"]),
                int(config["candidates"]),
                float(config.get("phase_deadline", 120)),
            )
            result.update(CpuMeter.delta(before, meter.sample()))
            emit("phase", name="load", **result)

        if config.get("setup_calls"):
            await wait_go("setup")
            before = meter.sample()
            result = await paced(
                calls,
                pairs,
                int(config["setup_calls"]),
                float(config["rate"]),
                0,
                float(config.get("phase_deadline", 120)),
            )
            result.update(CpuMeter.delta(before, meter.sample()))
            emit("phase", name="setup", **result)

        async def relay(name: str, frames: int) -> None:
            """Relay ``frames`` candidate frames each way in established calls; CPU/frame."""
            active = pairs[: int(config["relay_calls"])]
            ids = await asyncio.gather(*(calls.setup(a, b) for a, b in active))
            await wait_go(name)
            before = meter.sample()
            deadline = float(config.get("phase_deadline", 120))
            await asyncio.gather(
                *(
                    calls.candidates(a, b, call_id, frames, deadline)
                    for (a, b), (call_id, _, _) in zip(active, ids, strict=True)
                )
            )
            result = CpuMeter.delta(before, meter.sample())
            result.update(frames=2 * frames * len(active), calls=len(active))
            emit("phase", name=name, **result)
            await asyncio.gather(
                *(
                    calls.hangup(a, b, call_id)
                    for (a, b), (call_id, _, _) in zip(active, ids, strict=True)
                )
            )

        if config.get("relay_calls") and config.get("relay_frames"):
            await relay("relay", int(config["relay_frames"]))

        if config.get("max_seconds"):
            active = pairs[: int(config.get("max_concurrency", 16))]
            before = meter.sample()
            result = await saturate(
                calls, active, float(config["max_seconds"]), int(config["candidates"])
            )
            result.update(CpuMeter.delta(before, meter.sample()))
            emit("phase", name="max", **result)

        steps = [int(n) for n in config.get("idle_steps", [])]
        if steps:
            settle = float(config.get("idle_settle", 2.0))
            await asyncio.sleep(settle)
            base = {pid: rss_kb(pid) for pid in config["server_pids"]}
            idle: list[Client] = []
            specs = config["idle"]
            try:
                for step in steps:
                    t1 = now()
                    before = meter.sample()
                    added = await open_all(specs[len(idle) : step], protocol, timeout, width=100)
                    opened = CpuMeter.delta(before, meter.sample())
                    idle += added
                    opened_s = now() - t1
                    await asyncio.sleep(settle)
                    rss = {pid: rss_kb(pid) for pid in config["server_pids"]}
                    delta_kb = sum(rss[pid] - base[pid] for pid in base)
                    # The servers' CPU while every connection (the load's too) sits idle:
                    # what keeping them signed in costs (presence renewals, timers).
                    idle_cpu = None
                    window = float(config.get("idle_cpu_seconds") or 0)
                    if window > 0:
                        before = meter.sample()
                        await asyncio.sleep(window)
                        quiet = CpuMeter.delta(before, meter.sample())
                        spent = quiet["cpu_s"] + (quiet["redis_cpu_s"] or 0)
                        idle_cpu = spent / window / (len(idle) + len(load)) * 1e6
                    emit(
                        "phase",
                        name="memory",
                        connections=len(idle),
                        rss_base_kb=base,
                        rss_kb=rss,
                        per_connection_kb=delta_kb / len(idle),
                        open_seconds=round(opened_s, 3),
                        # Server CPU to accept and sign in one connection (upgrade + auth).
                        open_cpu_ms=(opened["cpu_s"] + (opened["redis_cpu_s"] or 0))
                        / max(1, len(added))
                        * 1e3,
                        idle_cpu_us=idle_cpu,
                    )
                # The relay again with every idle connection still open: does the cost of
                # a frame depend on how many other connections the server holds?
                if config.get("relay_calls") and config.get("idle_relay_frames"):
                    await relay("relay_idle", int(config["idle_relay_frames"]))
            finally:
                await close_all(idle)
    finally:
        await close_all(load)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    emit("done", seconds=round(now() - t0, 3), cpu_s=usage.ru_utime + usage.ru_stime)


def main() -> None:
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop  # the faster loop makes the client less of a bottleneck

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(asyncio.wait_for(run(config), float(config.get("total_timeout", 600))))
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
