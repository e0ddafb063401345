"""This worker's webhook deliveries: claim due ones, send them, record what came of them.

Every worker runs this loop; the events wait in Postgres (queued by the statement that ends a
response), so nothing is lost with a process and memory does not grow with a backlog. A
claim leases each delivery past the end of its send (``FOR UPDATE SKIP LOCKED``, then
``next_attempt_at`` moved on), so two workers never send one at once; a worker that dies
mid-send leaves its deliveries to be claimed again once the lease ends. At most
``MAX_IN_FLIGHT_PER_URL`` sends per receiver run at once, so a slow or dead receiver never
holds up another. A failed send is retried with exponential back-off and jitter until the
retry horizon (72 h by default) has passed since the event; a 410 stops its URL. The same
event id (``webhook-id``) goes with every attempt, so receivers can drop repeats.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter

from ..storage.models import WebhookDelivery, WebhookDeliveryStatus, WebhookOutcome
from ..storage.store import Store, WebhookFanout
from .sender import Result, SendResult, WebhookSender
from .settings import WebhookSettings, describe_url

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT_PER_URL = 8
#: The longest pause between two attempts of one delivery.
MAX_RETRY_DELAY_SECONDS = 3600.0
#: A claim's lease, in send time-outs: the send ends within one, recording its outcome well within two.
LEASE_IN_TIMEOUTS = 2.0
SWEEP_INTERVAL_SECONDS = 600.0
#: How long shutdown waits to record the sends it cut short (they are then retried at once).
RELEASE_SECONDS = 1.0


def retry_delay(attempts: int, first_seconds: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from
    ``first_seconds`` up to an hour, with jitter (half to all of it) so receivers coming back
    are not hit by every retry at once."""
    base = min(first_seconds * 2.0 ** min(attempts - 1, 60), MAX_RETRY_DELAY_SECONDS)
    return base * random.uniform(0.5, 1.0)


class WebhookDeliveries:
    """The delivery loop of one worker (:meth:`start` with the worker's store, :meth:`close`)."""

    def __init__(self, settings: WebhookSettings, *, poll_interval_seconds: float, retention_seconds: float):
        self.settings = settings
        self.poll_interval_seconds = poll_interval_seconds
        self.retention_seconds = retention_seconds
        self._urls = list(settings.urls)  # less those a 410 stopped
        self._in_flight: Counter[str] = Counter()
        self._sends: set[asyncio.Task] = set()
        self._outcomes: list[WebhookOutcome] = []  # to record in the next statement
        self._to_stop: dict[str, str] = {}  # URL -> the 410 that stopped it, to record
        self._failing: set[str] = set()  # URLs whose last send failed (logged once per streak)
        self._wakeup = asyncio.Event()
        self._store: Store | None = None
        self._sender: WebhookSender | None = None
        self._loop: asyncio.Task | None = None

    def fanout(self) -> WebhookFanout:
        """What the ending statement queues, and how it wakes this loop."""
        return WebhookFanout(urls=self.settings.urls, event_types=self.settings.event_types, queued=self.wake)

    def wake(self) -> None:
        self._wakeup.set()

    def start(self, store: Store) -> None:
        self._store = store
        self._sender = WebhookSender(self.settings, connections=MAX_IN_FLIGHT_PER_URL * len(self._urls))
        self._loop = asyncio.create_task(self._run(), name="webhooks")

    async def close(self) -> None:
        """Stop; sends cut short are recorded to be retried at once (else after their lease)."""
        tasks = [t for t in (self._loop, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if (self._outcomes or self._to_stop) and self._store is not None:
            try:
                await asyncio.wait_for(self._record(), RELEASE_SECONDS)
            except Exception as exc:
                logger.info("Webhook sends cut short by shutdown are retried once their lease ends (%s)", exc)
        if self._sender is not None:
            await self._sender.close()

    # ----- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        next_sweep = 0.0
        database_ok = True
        while True:
            self._wakeup.clear()
            try:
                if next_sweep == 0.0:
                    await self._resume_stopped_urls()
                await self._record()
                if time.monotonic() >= next_sweep:
                    await self._store.delete_expired_webhook_deliveries(
                        self.retention_seconds, self.settings.retry_horizon_seconds)
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
                await self._claim_and_send()
                if not database_ok:
                    logger.info("Webhook deliveries: the database answers again")
                database_ok = True
            except Exception as exc:
                if database_ok:
                    logger.warning("Webhook deliveries: %s: %s; trying again",
                                   type(exc).__name__, exc)
                database_ok = False
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.poll_interval_seconds)
            except TimeoutError:
                pass

    async def _resume_stopped_urls(self) -> None:
        for url in await self._store.resume_webhook_urls(self._urls):
            logger.warning("Webhook receiver %s had answered 410 Gone; this worker started, so it gets "
                           "deliveries again", describe_url(url))

    async def _claim_and_send(self) -> None:
        limits = {url: MAX_IN_FLIGHT_PER_URL - self._in_flight[url] for url in self._urls
                  if self._in_flight[url] < MAX_IN_FLIGHT_PER_URL}
        if not limits:
            return
        lease = self.settings.timeout_seconds * LEASE_IN_TIMEOUTS
        for delivery in await self._store.claim_webhook_deliveries(limits, lease):
            self._in_flight[delivery.url] += 1
            task = asyncio.create_task(self._send(delivery), name=f"webhook-{delivery.event_id}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, delivery: WebhookDelivery) -> None:
        try:
            sent = await self._sender.send(delivery)
        except asyncio.CancelledError:
            self._outcomes.append(WebhookOutcome(delivery.delivery_id, delivery.attempts, delivered=False,
                                                 error="the server stopped during the send"))
            raise
        except Exception as exc:  # a bug here must not lose the delivery: retry it
            logger.exception("Webhook send of %s failed unexpectedly", delivery.event_id)
            sent = SendResult(Result.RETRY, f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight[delivery.url] -= 1
            self.wake()  # a slot is free and there is an outcome to record
        self._settle(delivery, sent)

    def _settle(self, delivery: WebhookDelivery, sent: SendResult) -> None:
        url = describe_url(delivery.url)
        if sent.result is Result.DELIVERED:
            self._outcomes.append(WebhookOutcome(delivery.delivery_id, delivery.attempts, delivered=True))
            if delivery.url in self._failing:
                self._failing.discard(delivery.url)
                logger.info("Webhook receiver %s accepts deliveries again", url)
            return
        if sent.result is Result.GONE:
            if delivery.url in self._urls:
                self._urls.remove(delivery.url)
                self._to_stop[delivery.url] = sent.detail
                logger.warning("Webhook receiver %s answered 410 Gone: no more deliveries to it (pending ones "
                               "are dropped) until the server starts again", url)
            return
        delay = retry_delay(delivery.attempts, self.settings.first_retry_seconds)
        self._outcomes.append(WebhookOutcome(delivery.delivery_id, delivery.attempts, delivered=False,
                                             retry_after=delay, error=sent.detail))
        logger.debug("Webhook %s to %s: attempt %d failed (%s); next in %.1f s",
                     delivery.event_id, url, delivery.attempts, sent.detail, delay)
        if delivery.url not in self._failing:
            self._failing.add(delivery.url)
            logger.warning("Webhook receiver %s fails (%s); retrying with back-off for up to %g h",
                           url, sent.detail, self.settings.retry_hours)
        if delay < self.poll_interval_seconds:  # due before the next poll
            asyncio.get_running_loop().call_later(delay, self.wake)

    async def _record(self) -> None:
        """Store the stops and outcomes gathered since the last time (kept for the next on error)."""
        while self._to_stop:
            url, detail = next(iter(self._to_stop.items()))
            await self._store.stop_webhook_url(url, detail)
            del self._to_stop[url]
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        try:
            changed = await self._store.record_webhook_outcomes(outcomes, self.settings.retry_horizon_seconds)
        except BaseException:
            self._outcomes = outcomes + self._outcomes
            raise
        for row in changed:
            if row.status is WebhookDeliveryStatus.FAILED:
                logger.error("Webhook %s (%s of %s) to %s: not delivered after %d attempts within %g h "
                             "(last: %s); given up", row.event_id, row.type, row.response_id,
                             describe_url(row.url), row.attempts, self.settings.retry_hours, row.last_error)
