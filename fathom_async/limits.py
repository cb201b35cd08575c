"""Writing your own rate-limit backend: the names a limiter implements and returns.

Everyday code needs none of this: `FathomClient` shares an in-process
`fathom_async.RateLimits` per token by default, and `fathom_async.RedisRateLimits`
shares one budget between processes. Implement `RateLimitBackend` when the budget must
live somewhere else (another store, another coordination service) and pass an
instance as `FathomClient(rate_limits=...)`:

- `acquire()` waits for a slot in a bucket and returns a `Permit`; the client enters
  the permit around the request, so a call that ends without sending gives its slot
  back;
- `observe()` receives a `ServerFeedback` for each response (a 429 with its
  `Retry-After`, the `X-RateLimit-*` headers), so the backend can pause a bucket the
  server says is spent;
- `snapshot()` answers with one `BucketSnapshot` per bucket, for dashboards and tests.

The buckets are `"entity"` (2000 requests an hour) and `"reports"` (10 a minute), and
priorities `"interactive"` and `"bulk"` (see `fathom_async.types`).
"""

from ._scheduler import BucketSnapshot, RateLimitBackend, ServerFeedback
from ._waitqueue import Permit

__all__ = ["BucketSnapshot", "Permit", "RateLimitBackend", "ServerFeedback"]
