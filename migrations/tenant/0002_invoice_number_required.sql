-- Apotheca tenant schema, version 2: an invoice's number is a NOT NULL column.
--
-- Version 1 let `number` be NULL while a sale's transaction ran (the number was taken by a
-- later statement) and kept "every committed invoice has a number" with a deferred
-- constraint trigger that looked each new invoice up again at commit, through dynamic SQL
-- planned anew every time: about a tenth of PostgreSQL's time per sale. A sale now writes its
-- invoices with their numbers in one statement (the counter row is still taken last), so the
-- rule is a plain NOT NULL and the trigger goes.
--
-- SET NOT NULL checks the existing rows (one scan of the table under its lock): every row
-- version 1 committed has a number, since the trigger refused any commit without one.

DROP TRIGGER invoices_numbered ON invoices;
DROP FUNCTION invoices_check_numbered();
ALTER TABLE invoices ALTER COLUMN number SET NOT NULL;
