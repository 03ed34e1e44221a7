-- Apotheca tenant schema, version 3: a user's password hash may be one Django made.
--
-- Users brought from the Django pharmacy app keep their passwords: their Django hashes are
-- stored as they were and verify at login (pharmacy::accounts::django), and the first
-- successful login replaces one with Apotheca's argon2id hash. So the column now also takes
-- Django's formats: PBKDF2 (SHA-256 or SHA-1), argon2 behind Django's prefix, bcrypt of the
-- SHA-256, and Django's unusable password ('!' then 40 characters: that user must reset it).
-- Anything else is still refused.

ALTER TABLE users DROP CONSTRAINT users_password_hash_check;
ALTER TABLE users ADD CONSTRAINT users_password_hash_check CHECK (
    length(password_hash) <= 512
    AND (password_hash LIKE '$argon2id$%'
         OR password_hash ~ '^(pbkdf2_sha256|pbkdf2_sha1)\$[0-9]+\$[^$]+\$[A-Za-z0-9+/=]+$'
         OR password_hash ~ '^argon2\$argon2(id|i|d)\$'
         OR password_hash ~ '^bcrypt_sha256\$\$2[abxy]?\$[0-9]{2}\$'
         OR password_hash ~ '^![A-Za-z0-9]{0,64}$'));
