-- SCIM filters compare `userName` and a group's `displayName` without
-- regard to case, as `lower(…)`: indexes on exactly that expression serve
-- `eq` and sorting.
CREATE INDEX users_username_lower ON users (lower(username));
CREATE INDEX groups_name_lower ON groups (lower(name));
