"""Writing your own rate-limit backend: the names a limiter implements and returns.

Everyday code needs none of this: `FathomClient` shares an in-process
`fathom_async.RateLimits` per token by default, and `fathom_async.RedisRateLimits`
shares one budget between processes. Implement `RateLimitBackend` when the budget must
live somewhere else (another store, another coordination service) and pass an
instance as `FathomClient(rate_limits=...)`. What the client does with it, per
attempt of every call:

- `try_acquire(bucket, priority=...)` first, if the backend has it: a `Permit` for a
  slot free now, or None. It is optional: the default returns None.
- `acquire(bucket, priority=..., timeout=...)` then waits for a slot and returns a
  `Permit`. `timeout` is what is left of the call's `acquire_timeout` (None: wait
  as long as it takes); when no slot comes within it, raise
  `fathom_async.AcquireTimeoutError(bucket, timeout, next_slot_in=...)`. A waiter
  that is cancelled must leave nothing behind. The client may call it from several
  event loops and threads, as it is itself.
- `permit.release()` in a `finally`, once the request is done or failed: it frees
  the in-flight place, and the window slot stays spent (the request may have reached
  Fathom). Only `permit.revoke()`, for a call cancelled or closed after its grant
  but before anything was sent, gives the window slot back.
- `observe(bucket, feedback)` only for a response that says something about the
  limit: a status of 400 or more, or any response with `X-RateLimit-Remaining`.
  On a 429 the backend must pause the whole bucket for `feedback.retry_after` (else
  `feedback.reset_after`): with a limiter in place the client does not sleep the
  `Retry-After` itself, its retry waits for a slot instead.
- `snapshot()` for dashboards, logs and the export's progress and ETA: it must
  return a `BucketSnapshot` for each of `"entity"` and `"reports"`.

Build a permit as `Permit(bucket, granted_at, on_release=..., on_revoke=...)`:
`on_release` frees the in-flight place, and runs at most once; `on_revoke`, if
given, runs instead when `revoke()` is called on a permit not yet released, and must
undo the whole grant (window slot and in-flight place); the client never releases a
permit it revoked. Without `on_revoke`, `revoke()` is a `release()`.

The buckets are `"entity"` (2000 requests an hour) and `"reports"` (10 a minute), and
priorities `"interactive"` and `"bulk"` (see `fathom_async.types`).
"""

from ._scheduler import BucketSnapshot, RateLimitBackend, ServerFeedback
from ._waitqueue import Permit

__all__ = ["BucketSnapshot", "Permit", "RateLimitBackend", "ServerFeedback"]
