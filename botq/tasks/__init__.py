"""The built-in task handlers: where the queue meets the domain code.

Each module registers one handler when imported; a worker imports it the first time a task of
that type arrives (see `botq.queue.handlers.BUILTIN_MODULES`):
HistorySync (candles into the store).
"""
