"""A process-local cache kept coherent by a Pub/Sub invalidation broadcast.

Whoever changes a cached thing publishes its key on `cache:invalidate` ("*" means
everything); every subscriber drops its copy and reloads on next use. Pub/Sub is
fire-and-forget, so a subscriber that was disconnected may have missed invalidations: it
drops its whole cache every time it (re)subscribes.

Usage:  cache = InvalidatingCache("classify-1", loader); cache.start(); cache.get("taxonomy")
Publish: redis-cli PUBLISH cache:invalidate taxonomy
"""

import threading
import time

import redis

from common import CACHE_CHANNEL, connect, logger


class InvalidatingCache:
    """Values loaded by `loader(key)` and dropped when `cache:invalidate` names their key."""

    def __init__(self, name, loader):
        self._loader = loader
        self._values = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._log = logger(f"{name}/cache")
        self._thread = threading.Thread(target=self._listen, name=f"{name}-cache", daemon=True)
        self.invalidations = 0
        self.subscriptions = 0

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def get(self, key):
        with self._lock:
            if key in self._values:
                return self._values[key]
            generation = self._generation
        value = self._loader(key)
        with self._lock:
            # An invalidation that arrived while we were loading may concern the value we just
            # read; keep it only if none did (it is still returned for this one use).
            if self._generation == generation:
                self._values[key] = value
        return value

    def invalidate(self, key):
        with self._lock:
            self._generation += 1
            if key == "*":
                self._values.clear()
            else:
                self._values.pop(key, None)
            self.invalidations += 1

    def _listen(self):
        delay = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = connect().pubsub()
                pubsub.subscribe(CACHE_CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # Anything published while we were away was missed: start afresh.
                        self.invalidate("*")
                        self.subscriptions += 1
                        delay = 0.05
                    elif message["type"] == "message":
                        self.invalidate(message["data"])
            except (redis.ConnectionError, redis.TimeoutError) as err:
                self._log(f"invalidation feed lost ({err}); resubscribing in {delay:.2f}s")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - closing a dead connection may fail
                        pass
