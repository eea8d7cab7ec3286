-- Version 12: calls' first events are leased first (src/outbox/store.rs, lease_due).
--
-- A call's `call.init` is the event Flowlu answers with a routing decision while the
-- caller is ringing; under a backlog it must not wait behind other calls' later events.
-- The worker looks for due `call.init` head rows first, through this small index.
CREATE INDEX outbox_pending_init ON outbox (next_attempt_at)
    WHERE state = 'pending' AND kind = 'call.init';
