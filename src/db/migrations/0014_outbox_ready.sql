-- Version 14: leasing reads only the rows it can send (src/outbox/store.rs, lease_due_in).
--
-- Rows of one (integration, call) go out strictly in id order, so only the first pending
-- row of each call (its head) may be sent. The worker used to find heads by scanning the
-- pending rows in due order and checking each for an earlier pending row of its call; in
-- a backlog most pending rows are the later events of calls whose head is in flight, so
-- every lease scanned them all again. `blocked` is 1 on a pending row that has an earlier
-- pending row of its call: the worker's indexes below hold exactly the heads.
--
-- Who keeps `blocked` right: `enqueue` computes it for a new row (a new row has the
-- highest id, so any pending row of its call is earlier); the triggers below for every
-- other change of `state` and for deletions, whoever makes them (the worker, the CLI's
-- replay, a purge, a test).
ALTER TABLE outbox ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;

UPDATE outbox SET blocked = 1
WHERE state = 'pending'
  AND EXISTS (SELECT 1 FROM outbox p
              WHERE p.integration_id = outbox.integration_id AND p.call_key = outbox.call_key
                AND p.state = 'pending' AND p.id < outbox.id);

-- A head left 'pending' (delivered, failed) or was deleted: the call's next pending row,
-- if any, is its head now.
CREATE TRIGGER outbox_head_done AFTER UPDATE OF state ON outbox
WHEN OLD.state = 'pending' AND NEW.state != 'pending'
BEGIN
    UPDATE outbox SET blocked = 0
    WHERE id = (SELECT min(id) FROM outbox
                WHERE integration_id = OLD.integration_id AND call_key = OLD.call_key
                  AND state = 'pending')
      AND blocked = 1;
END;

CREATE TRIGGER outbox_head_deleted AFTER DELETE ON outbox
WHEN OLD.state = 'pending'
BEGIN
    UPDATE outbox SET blocked = 0
    WHERE id = (SELECT min(id) FROM outbox
                WHERE integration_id = OLD.integration_id AND call_key = OLD.call_key
                  AND state = 'pending')
      AND blocked = 1;
END;

-- A finished row made 'pending' again (`appliance outbox replay`): it waits for the
-- earlier pending rows of its call, and the later ones wait for it.
CREATE TRIGGER outbox_requeued AFTER UPDATE OF state ON outbox
WHEN OLD.state != 'pending' AND NEW.state = 'pending'
BEGIN
    UPDATE outbox SET blocked = EXISTS (SELECT 1 FROM outbox p
                                        WHERE p.integration_id = NEW.integration_id
                                          AND p.call_key = NEW.call_key
                                          AND p.state = 'pending' AND p.id < NEW.id)
    WHERE id = NEW.id;
    UPDATE outbox SET blocked = 1
    WHERE integration_id = NEW.integration_id AND call_key = NEW.call_key
      AND state = 'pending' AND id > NEW.id AND blocked = 0;
END;

-- The heads in due order, and the heads that are calls' `call.init` (leased first).
DROP INDEX outbox_pending_init;
CREATE INDEX outbox_ready ON outbox (next_attempt_at, id)
    WHERE state = 'pending' AND blocked = 0;
CREATE INDEX outbox_ready_init ON outbox (next_attempt_at, id)
    WHERE state = 'pending' AND blocked = 0 AND kind = 'call.init';
-- Rows leased or reserved: when the first lease ends (the worker wakes then).
CREATE INDEX outbox_leased ON outbox (leased_until) WHERE leased_until IS NOT NULL;
