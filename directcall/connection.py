"""How a signaling connection runs: one handler at a time, whatever the message's source.

:class:`OrderedConsumer` is channels' ``AsyncWebsocketConsumer`` with its own ``__call__``
and ``dispatch`` (copies of channels' own, changed; tests/test_consumers.py fails when
channels changes its code, so that the copies are checked again) and the same-process path
of :mod:`directcall.transport`: a message from a connection of this process is handed to
:meth:`OrderedConsumer.deliver` instead of going through the channel layer. The browser's
frames, the channel layer's messages and the delivered ones are all handled in order, no
two handlers of one connection interleaving. :class:`~directcall.consumers.SignalingConsumer`
speaks the protocol on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from . import errors, protocol, transport

logger = logging.getLogger("directcall.signaling")


class OrderedConsumer(AsyncWebsocketConsumer):
    """A WebSocket consumer whose handlers never interleave, reachable without the layer.

    Its state starts as class attributes: an idle connection's instance holds only what
    changed (docs/performance.md, memory per idle connection).
    """

    # The tasks of this connection (made when the first is spawned), cancelled at the end.
    tasks: set[asyncio.Task] | None = None
    finished = False
    # The same-process path (transport.send): how many of this connection's handlers
    # are running, and the messages delivered meanwhile, which wait for them.
    handling = 0
    backlog: deque[dict[str, Any]] | None = None  # made when first needed
    # The browser's next frame waits for a delivered message's handler to end.
    idle_waiter: asyncio.Future[None] | None = None
    # A copy of the context the connection started in: delivered messages are handled in
    # (a copy of) it, never in their sender's (see deliver).
    context: contextvars.Context | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every attribute an instance will have, set first in one order: CPython keeps
        # the instances' values in a compact array then (keys shared by the class); an
        # attribute added later, in another order, turns the instance's __dict__ into a
        # dict of its own (~1 KiB per connection).
        self.scope: dict[str, Any] = {}
        self.channel_layer = self.channel_name = self.base_send = None
        self.tasks = self.backlog = self.idle_waiter = self.context = None
        self.finished = False
        self.handling = 0

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Callable[..., Any]:
        """channels' ``as_asgi()``, returning the new consumer's own coroutine instead of
        awaiting it in one more: no frame of it stays on the stack while the connection
        lives (~0.2 KiB of each idle connection)."""
        channels_app = super().as_asgi(**initkwargs)

        def app(scope: dict, receive: Callable, send: Callable) -> Coroutine[Any, Any, None]:
            return cls(**initkwargs)(scope, receive, send)

        functools.update_wrapper(app, cls, updated=())
        app.consumer_class = channels_app.consumer_class  # type: ignore[attr-defined]
        app.consumer_initkwargs = channels_app.consumer_initkwargs  # type: ignore[attr-defined]
        app._asgi_single_callable = True  # type: ignore[attr-defined]
        return app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """channels' ``AsyncConsumer.__call__``, changed in three ways.

        The browser's frames are read and handled in this task, one at a time; the channel
        layer's messages are handed over like same-process ones (:meth:`deliver`) — by the
        layer itself when it can (directcall's layers:
        :meth:`directcall.layers.InMemoryChannelLayer.subscribe`,
        :meth:`directcall.redislayer.RedisPubSubLayer.subscribe`), else read by a second
        task — so no handler of this connection ever interleaves with another and no message
        costs channels' ``await_many_dispatch`` round (a new task and an ``asyncio.wait`` per
        message). The channel layer's receive waits out a short outage
        (a Redis restart) instead of killing the connection; and however the connection
        ends, its tasks end and its presence goes (channels calls ``disconnect()`` only on
        a ``websocket.disconnect``). tests/test_consumers.py fails when channels changes
        its own, so that this copy is checked again.
        """
        self.context = contextvars.copy_context()  # ~70 bytes: the HAMT is shared
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        transport.register(self.channel_name, self)
        # The channel layer's messages: handed over as they are sent by a layer that can
        # (directcall's in-memory and Redis layers: no task per connection), else read by
        # a task.
        subscribe = getattr(self.channel_layer, "subscribe", None)
        listener = None
        if subscribe is not None:
            subscribe(self.channel_name, self)
        else:
            listener = asyncio.ensure_future(self._listen())
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except Exception:
            logger.error("signaling connection ended by an error", exc_info=True)
            with contextlib.suppress(Exception):
                await self.close(protocol.CLOSE_UNAVAILABLE)
        finally:
            if listener is not None:
                listener.cancel()
            else:
                self.channel_layer.unsubscribe(self.channel_name)
            await self._finish()

    async def _listen(self) -> None:
        """The channel layer's messages for this connection, handed to :meth:`deliver`."""
        try:
            while True:
                self.deliver(await transport.receive(self.channel_name))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The channel layer stayed unreachable: end in order; the client reconnects.
            if errors.is_unavailable(exc):
                logger.warning("signaling connection ended: channel layer unreachable: %r", exc)
            else:
                logger.error("signaling connection ended by an error", exc_info=True)
            with contextlib.suppress(Exception):
                await self.close(protocol.CLOSE_UNAVAILABLE)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a message to its handler, without channels' per-message connection clean-up.

        channels runs ``aclose_old_connections()`` — a thread hop — before every handler.
        Every ORM call here goes through ``database_sync_to_async``, which closes stale
        connections around itself already, so that hop only cost time: about two thirds of
        a relayed frame's server CPU (docs/performance.md). tests/test_consumers.py fails
        when channels changes its own ``dispatch``, so that this copy is checked again.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        while self.handling:  # a delivered message's handler is waiting on its socket
            self.idle_waiter = asyncio.get_running_loop().create_future()
            await self.idle_waiter
        self.handling += 1
        try:
            await handler(message)
        finally:
            await self._handled()

    # -- the same-process path (directcall.transport) ---------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """A ``dc.*`` message from a connection of this process, without the channel layer.

        Handled at once, in the sender's task, by the handler the channel layer would have
        run (with the same checks), when this connection is between messages: as with
        channels, no two of its handlers interleave. While one runs, the message waits in
        order and is handled right after it, in this connection's task. A handler that
        must wait (its socket's write buffer is full) goes on in a task of this connection,
        so that the sender never waits for the receiver.

        The handler runs in a copy of this connection's context, as in a task of its own,
        never in the sender's: a sender under ``async_to_sync`` (a view, a command, an
        ``on_commit`` callback) carries that call's thread-sensitive executor, which quits
        when the call returns, and a handler that inherited it failed its next database
        hop ("CurrentThreadExecutor already quit"). tests/test_connection_context.py.
        """
        if self.finished:
            return
        if self.handling:
            if self.backlog is None:
                self.backlog = deque()
            self.backlog.append(message)
            return
        try:
            handler = getattr(self, get_handler_name(message), None)
        except ValueError:
            handler = None
        # The handler itself (_handle only when there is none: it logs why).
        step = handler(message) if handler is not None else self._handle(message)
        # A copy for each handler, as for a task: one that reaches this connection again
        # before its first await must not enter a context that is entered already.
        context = self.context.copy() if self.context is not None else contextvars.Context()
        try:
            waiting = context.run(step.send, None)
        except StopIteration:
            return
        except Exception:
            logger.exception("a %s message failed", message.get("type"))
            return
        self.handling += 1
        self._spawn(self._go_on(step, waiting), context)

    async def _go_on(self, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _GoOn(step, waiting)
        except Exception:
            logger.exception("a delivered message failed")
        finally:
            await self._handled()

    async def _handle(self, message: dict[str, Any]) -> None:
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message.get('type')}")
            await handler(message)
        except Exception:
            logger.exception("a %s message failed", message.get("type"))

    async def _handled(self) -> None:
        """A handler ended: handle what was delivered meanwhile, then be free again."""
        try:
            while self.backlog and self.handling == 1:
                await self._handle(self.backlog.popleft())
        finally:
            self.handling -= 1
            waiter, self.idle_waiter = self.idle_waiter, None
            if not self.handling and waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _finish(self) -> None:
        """End the connection's machinery, once: no more deliveries, its tasks cancelled.
        Subclasses end their own work after calling this."""
        if self.finished:
            return
        self.finished = True
        transport.unregister(self.channel_name)
        self.backlog = None
        for task in self.tasks or ():
            task.cancel()

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task:
        """A task of this connection (cancelled when it ends), in ``context`` if given, else
        in a copy of the current one."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """channels' ``websocket_receive``: the frame's text or bytes to :meth:`receive`."""
        text = message.get("text")
        if text is not None:
            await self.receive(text_data=text)
        else:
            await self.receive(bytes_data=message.get("bytes"))


class _GoOn:
    """Awaitable: a handler coroutine stepped once by hand, waiting on ``waiting``, finished
    in the task that awaits this (see :meth:`OrderedConsumer.deliver`)."""

    def __init__(self, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.step = step
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        yield self.waiting  # what the handler waits on: the task resumes us once it is done
        return (yield from self.step.__await__())
