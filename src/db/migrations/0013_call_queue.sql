-- Version 13: the queue or ring group a call went through (issue 13, problem 9), as the
-- PBX named it: an Asterisk `Queue` (QueueCallerJoin / AgentCalled), the extension of a
-- ring group that rang several phones at once, a FreeSWITCH `cc_queue`.
-- NULL when the call went through none (and for calls stored by earlier versions).
ALTER TABLE calls ADD COLUMN queue TEXT;
