-- SCIM filters compare `userName` and a group's `displayName` without
-- regard to case, as `lower(…)`: indexes on exactly that expression serve
-- `eq`, sorting, and (`text_pattern_ops`) `sw` as a LIKE prefix range.
CREATE INDEX users_username_lower ON users (lower(username));
CREATE INDEX users_username_lower_prefix ON users (lower(username) text_pattern_ops);
CREATE INDEX groups_name_lower ON groups (lower(name));
-- Superseded: filters never read `username_key`.
DROP INDEX users_username_prefix;
