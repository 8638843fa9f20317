-- Whose fault a failed job was, as its worker reported it: the user's (their build, their
-- app's health, their repository), the platform's, or nobody's (cancelled).
ALTER TABLE jobs ADD COLUMN fault TEXT CHECK (fault IN ('user', 'platform', 'cancelled'));
