-- Apotheca tenant schema, version 4: a pharmacy's history brought from the Django app
-- (`apotheca import`, docs/import.md).
--
-- Stock on hand arrives as one opening-balance movement per batch ('opening', always in), so
-- batches and ledger agree from the first minute. Past sales keep the figures the app
-- recorded, which its browser computed and which may break today's rules (a total that is not
-- subtotal − discount, a line whose total is not quantity × price, cash with no amount
-- received): such invoices and lines are marked `imported`, and only they are exempt from
-- those checks. Every sale made in Apotheca still meets them all.

ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_reason_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_reason_check CHECK (reason IN
    ('receipt', 'sale', 'return', 'supplier_return', 'write_off', 'adjustment', 'opening'));
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_sign_matches_reason;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_sign_matches_reason CHECK (CASE reason
    WHEN 'receipt'         THEN quantity > 0
    WHEN 'return'          THEN quantity > 0
    WHEN 'opening'         THEN quantity > 0
    WHEN 'sale'            THEN quantity < 0
    WHEN 'supplier_return' THEN quantity < 0
    WHEN 'write_off'       THEN quantity < 0
    ELSE true
END);

ALTER TABLE invoices ADD COLUMN imported boolean NOT NULL DEFAULT false;
ALTER TABLE invoices DROP CONSTRAINT invoices_subtotal_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_subtotal_check CHECK (imported OR subtotal >= 0);
ALTER TABLE invoices DROP CONSTRAINT invoices_discount_range;
ALTER TABLE invoices ADD CONSTRAINT invoices_discount_range
    CHECK (imported OR (discount >= 0 AND discount <= subtotal));
ALTER TABLE invoices DROP CONSTRAINT invoices_tax_matches_rate;
ALTER TABLE invoices ADD CONSTRAINT invoices_tax_matches_rate
    CHECK (imported OR tax = round((subtotal - discount) * tax_rate, 2));
ALTER TABLE invoices DROP CONSTRAINT invoices_total_formula;
ALTER TABLE invoices ADD CONSTRAINT invoices_total_formula
    CHECK (imported OR total = subtotal - discount + tax);
ALTER TABLE invoices DROP CONSTRAINT invoices_payment_covers_total;
ALTER TABLE invoices ADD CONSTRAINT invoices_payment_covers_total
    CHECK (imported OR (amount_received >= total AND change_due = amount_received - total));
ALTER TABLE invoices DROP CONSTRAINT invoices_change_only_for_cash;
ALTER TABLE invoices ADD CONSTRAINT invoices_change_only_for_cash
    CHECK (imported OR payment_method = 'cash' OR change_due = 0);

ALTER TABLE invoice_lines ADD COLUMN imported boolean NOT NULL DEFAULT false;
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_line_total_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_line_total_check
    CHECK (imported OR line_total = unit_price * quantity);
