-- Login throttling (SPEC §12): one row per (account, address) and one per address, counted
-- with a row-locking upsert so the limit holds across processes. Attempts refused while a
-- key is locked only bump `throttled`: no audit row per refused request.
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    -- Attempts past the check whose password is still being verified.
    pending INTEGER NOT NULL DEFAULT 0,
    window_start TEXT NOT NULL,
    lockouts INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    throttled INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);

-- Idempotency keys: a running request holds a short lease; once it has lapsed (the request
-- died), a retry with the same key takes the key over instead of being refused for 24 h.
-- NULL counts as lapsed.
ALTER TABLE idempotency_keys ADD COLUMN lease_until TEXT;
