"""Makes a database of the Django pharmacy app with Django itself, for `apotheca import`'s tests
and benchmark: the models of PHARMACY_APP.md (pharmacy_app/), `makemigrations` and `migrate`, rows
through the ORM (users with make_password), then the quirks real databases of the app contain,
written with raw SQL.

    python make_source.py sqlite PATH [--bench MEDICINES INVOICES]
    python make_source.py postgres URL [--bench MEDICINES INVOICES]
    python make_source.py dumpdata PATH        # the small set, as `manage.py dumpdata` JSON in
                                               # UTF-16 LE with a byte-order mark and CRLF
    python make_source.py tenants URL [--bench PHARMACIES MEDICINES INVOICES]
        # django-tenants (section 2): the public tenant and three pharmacies (sunrise: the
        # small set, with a second domain; moonlight: the small set without its company table,
        # an older version; closed: inactive, the small set), or PHARMACIES pharmacies of the
        # bench's sizes

The small set is fixed (the tests check it row by row); --bench makes MEDICINES medicine rows
and INVOICES invoices of three lines each, with the same quirks. Prints one JSON line: what
was made.
"""

import datetime
import decimal
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "pharmacy_app"))

# The passwords the tests log in with: each user's old Django password.
PASSWORDS = {
    "admin": "admin-old-pass-1",
    "ram": "ram-old-pass-22",
    "sita": "sita-old-pass-333",
    "hari": "hari-old-pass-4444",
}


APPS = ["pharmacy", "supplier", "medicine", "billing"]

# Every hasher a site may have configured: the users below use several.
HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
]


def migration_modules(apps):
    """Empty migration packages in a folder of this run, for makemigrations to fill."""
    folder = tempfile.mkdtemp()
    sys.path.insert(0, folder)
    for app in apps:
        os.makedirs(os.path.join(folder, f"migrations_{app}"))
        open(os.path.join(folder, f"migrations_{app}", "__init__.py"), "w").close()
    return {app: f"migrations_{app}" for app in apps}


def configure(database):
    """Django with the app's models; their migrations made here (makemigrations into a
    folder of this run) and applied, so django_migrations says what a real database says."""
    import django
    from django.conf import settings

    settings.configure(
        MIGRATION_MODULES=migration_modules(APPS),
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "pharmacy",
                        "supplier", "medicine", "billing"],
        AUTH_USER_MODEL="pharmacy.User",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=HASHERS,
    )
    django.setup()
    from django.core.management import call_command

    call_command("makemigrations", *APPS, verbosity=0)
    call_command("migrate", verbosity=0)


def configure_tenants(database):
    """django-tenants: the tenants app shared, the pharmacy app's apps in every schema."""
    import django
    from django.conf import settings

    apps = APPS + ["tenants"]
    database = dict(database, ENGINE="django_tenants.postgresql_backend")
    shared = ["django_tenants", "tenants", "django.contrib.contenttypes"]
    tenant = ["django.contrib.contenttypes", "django.contrib.auth"] + APPS
    settings.configure(
        MIGRATION_MODULES=migration_modules(apps),
        DATABASES={"default": database},
        DATABASE_ROUTERS=["django_tenants.routers.TenantSyncRouter"],
        SHARED_APPS=shared,
        TENANT_APPS=tenant,
        INSTALLED_APPS=shared + [a for a in tenant if a not in shared],
        TENANT_MODEL="tenants.Client",
        TENANT_DOMAIN_MODEL="tenants.Domain",
        AUTH_USER_MODEL="pharmacy.User",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=HASHERS,
    )
    django.setup()
    from django.core.management import call_command

    call_command("makemigrations", *apps, verbosity=0)
    call_command("migrate_schemas", shared=True, verbosity=0)


def tenants(size):
    """The public tenant and the pharmacies, each filled in its own schema."""
    from django.db import connection
    from django_tenants.utils import schema_context
    from tenants.models import Client, Domain

    public = Client(schema_name="public", name="Public")
    public.save()
    Domain.objects.create(domain="localhost", tenant=public, is_primary=True)
    if size:
        made = []
        for i in range(size[0]):
            schema = f"ph{i + 1:03d}"
            c = Client(schema_name=schema, name=f"Pharmacy {i + 1}")
            c.save()
            Domain.objects.create(domain=f"{schema}.pharmacies.test", tenant=c, is_primary=True)
            with schema_context(schema):
                bench(size[1], size[2])
            made.append(schema)
        return made
    for schema, name, active in (("sunrise", "Sunrise Pharmacy", True),
                                 ("moonlight", "Moonlight Chemists", True),
                                 ("closed", "Closed Pharmacy", False)):
        c = Client(schema_name=schema, name=name, is_active=active)
        c.save()
        Domain.objects.create(domain=f"{schema}.pharmacies.test", tenant=c, is_primary=True)
        if schema == "sunrise":
            Domain.objects.create(domain="www.sunrise.test", tenant=c, is_primary=False)
        with schema_context(schema):
            gone = small()
            quirks(gone.customer_id)
            if schema == "moonlight":
                with connection.cursor() as cur:
                    cur.execute("DROP TABLE pharmacy_company")
    return ["sunrise", "moonlight", "closed"]


def postgres_database(url):
    from urllib.parse import unquote, urlparse

    u = urlparse(url)
    query = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path.lstrip("/"),
        "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""),
        "HOST": unquote(query.get("host", u.hostname or "")),
        "PORT": str(u.port or query.get("port", "")),
    }


D = decimal.Decimal


def small():
    """The fixed set: every rule of the mapping and every quirk of PHARMACY_APP.md, once."""
    from django.contrib.auth.hashers import make_password
    from billing.models import Customer, Invoice, InvoiceItem
    from medicine.models import Medicine
    from pharmacy.models import Company, User
    from supplier.models import Supplier, SupplierInvoice, SupplierInvoiceItem

    def user(username, role, hasher, **kw):
        u = User(username=username, role=role, **kw)
        u.password = make_password(PASSWORDS[username], hasher=hasher)
        u.save()
        return u

    user("admin", "admin", "pbkdf2_sha256", first_name="Asha", last_name="Shrestha",
         email="asha@sunrise.example", is_superuser=True, is_staff=True)
    user("ram", "pharmacist", "argon2", first_name="Ram", last_name="Karki", email="")
    user("sita", "cashier", "bcrypt_sha256", first_name="Sita", email="not an email")
    user("hari", "pharmacist", "pbkdf2_sha1", is_active=False)
    gopal = User(username="gopal", role="admin")
    gopal.set_unusable_password()
    gopal.save()

    Company.objects.create(company_name="Sunrise Pharmacy", address="Lalitpur-3",
                           phone_number="+977 1-5521234", email="info@sunrise.example",
                           pan_number="301234567", vat_number="VAT-77")

    himal = Supplier.objects.create(name="Himalayan Drugs", contact="Ram Bahadur",
                                    address="Teku, Kathmandu", email="orders@himal.example")
    nepal = Supplier.objects.create(name="Nepal Pharma", contact="01-4455667", address="",
                                    email="bad email", pan_number="600111222")

    day = datetime.date(2026, 3, 1)
    med = {}

    def medicine(key, name, brand, batch, category, mfg, exp, price, stock, supplier):
        med[key] = Medicine.objects.create(
            name=name, brand_name=brand, batch_number=batch, category=category,
            mfg_date=mfg, exp_date=exp, price=D(price), stock_qty=stock, supplier=supplier)

    medicine("para1", "Paracetamol 500mg", "Cetamol", "PC-001", "tablet/capsule",
             day, day.replace(year=2028), "2.50", 100, himal)
    medicine("para2", "Paracetamol 500mg", "Cetamol", "PC-002", "tablet/capsule",
             day, day.replace(year=2029), "2.75", 50, himal)
    medicine("amox", "Amoxicillin 250mg", "Amoxil", None, "tablet/capsule",
             day, day.replace(year=2028), "8.00", 40, nepal)
    medicine("syrup", "Cough Syrup", "Benadryl", "CS-9", "syrup",
             day, day.replace(year=2027), "120.00", 12, nepal)
    medicine("dose", "Insulin pen", "Novo", "IP-1", "dose form",
             day, day.replace(year=2027), "950.00", 3, himal)
    # The same batch number twice for one medicine.
    medicine("dup1", "Cetirizine 10mg", "Zyrtec", "CZ-1", "tablet/capsule",
             day, day.replace(year=2028), "3.00", 30, himal)
    medicine("dup2", "Cetirizine 10mg", "Zyrtec", "CZ-1", "tablet/capsule",
             day, day.replace(year=2028), "3.00", 20, himal)
    # Expired, with stock still on hand; made the day it expires; free.
    medicine("expired", "Vitamin C", "Celin", "VC-0", "tablet/capsule",
             datetime.date(2023, 1, 1), datetime.date(2025, 1, 1), "1.00", 25, nepal)
    medicine("sameday", "ORS sachet", "Jeevan Jal", "OR-5", "liquid", day, day, "15.00", 60, nepal)
    medicine("free", "Bandage", "Band-Aid", "BA-1", "patch",
             day, day.replace(year=2030), "0", 10, himal)
    medicine("gone", "Ibuprofen 400mg", "Brufen", "IB-4", "tablet/capsule",
             day, day.replace(year=2028), "5.00", 0, himal)

    receipt = SupplierInvoice.objects.create(invoice_number="HD-1001", date=day, supplier=himal,
                                             total_amount=D("400.00"), received_by="admin")
    SupplierInvoiceItem.objects.create(invoice=receipt, medicine_name="Paracetamol 500mg",
                                       brand_name="Cetamol", batch_number="PC-001",
                                       category="tablet/capsule", mfg_date=day,
                                       exp_date=day.replace(year=2028), quantity=200,
                                       price=D("2.00"))
    other = SupplierInvoice.objects.create(invoice_number="NP-77", date=day, supplier=nepal,
                                           total_amount=D("320.00"), received_by=None)
    SupplierInvoiceItem.objects.create(invoice=other, medicine_name="Amoxicillin 250mg",
                                       brand_name="Amoxil", batch_number="",
                                       category="tablet/capsule", mfg_date=day,
                                       exp_date=day.replace(year=2028), quantity=40,
                                       price=D("8.00"))

    maya = Customer.objects.create(name="Maya Gurung", phone_number="+977 980-1234567",
                                   email="maya@example.com", address="Patan")
    odd = Customer.objects.create(name="Bikash", phone_number="98O1234567", email="bikash at mail",
                                  address="")
    gone_customer = Customer.objects.create(name="Left Town", phone_number="9800000000")

    def sale(customer, name, method, received, change, subtotal, discount, total, billed_by,
             lines):
        inv = Invoice.objects.create(customer=customer, customer_name=name,
                                     phone_number=customer.phone_number if customer else "",
                                     payment_method=method,
                                     amount_received=None if received is None else D(received),
                                     return_amount=None if change is None else D(change),
                                     subtotal=D(subtotal), discount=D(discount), total=D(total),
                                     billed_by=billed_by)
        for key, qty, price, line_total in lines:
            InvoiceItem.objects.create(invoice=inv, medicine=med[key], quantity=qty,
                                       price=D(price), total=D(line_total))
        return inv

    # 1: a plain cash sale.
    sale(maya, "Maya Gurung", "cash", "300.00", "20.00", "280.00", "0", "280.00", "ram",
         [("para1", 12, "2.50", "30.00"), ("syrup", 2, "120.00", "240.00"),
          ("amox", 1, "8.00", "8.00"), ("free", 1, "0", "0")])
    # 2: esewa (a wallet), with a discount.
    sale(None, "Walk-in", "esewa", None, None, "27.50", "2.50", "25.00", "sita",
         [("para2", 10, "2.75", "27.50")])
    # 3: card, billed by nobody.
    sale(odd, "Bikash", "card", None, None, "16.00", "0", "16.00", "", [("amox", 2, "8.00", "16.00")])
    # 4: cash with no amount received; totals that do not add up.
    sale(None, "Walk-in", "cash", None, None, "200.00", "0", "180.00", "admin",
         [("syrup", 2, "120.00", "200.00")])
    # 5: billed by a user who no longer exists; its medicine row is deleted below.
    sale(gone_customer, "Left Town", "cash", "50.00", "0", "50.00", "0", "50.00", "ghost",
         [("gone", 10, "5.00", "50.00")])

    return gone_customer


def quirks(gone_customer_id):
    """What SQLite let real databases keep: references that point nowhere."""
    from django.db import connection as c

    with c.cursor() as cur:
        if c.vendor == "postgresql":
            cur.execute("SET session_replication_role = replica")
        else:
            cur.execute("PRAGMA foreign_keys = OFF")
        cur.execute("DELETE FROM medicine_medicine WHERE name = 'Ibuprofen 400mg'")
        cur.execute("DELETE FROM billing_customer WHERE customer_id = %s", [gone_customer_id])
        if c.vendor == "postgresql":
            cur.execute("SET session_replication_role = origin")


def bench(medicines, invoices):
    """MEDICINES medicine rows (a tenth of them a second batch of a medicine), INVOICES
    invoices of three lines each, made in bulk."""
    from django.contrib.auth.hashers import make_password
    from billing.models import Customer, Invoice, InvoiceItem
    from medicine.models import Medicine
    from pharmacy.models import User
    from supplier.models import Supplier

    rnd = random.Random(7)
    for name, role in (("admin", "admin"), ("ram", "pharmacist"), ("sita", "cashier")):
        u = User(username=name, role=role)
        u.password = make_password(PASSWORDS[name], hasher="pbkdf2_sha256")
        u.save()
    suppliers = [Supplier.objects.create(name=f"Supplier {i}", contact=f"98{i:08d}") for i in range(5)]
    cats = ["tablet/capsule", "liquid", "patch", "dose form", "ointment", "syrup", "injection",
            "cream"]
    rows = []
    for i in range(medicines):
        base = i if i % 10 else max(i - 1, 0)
        rows.append(Medicine(name=f"Medicine {base}", brand_name=f"Brand {base % 97}",
                             batch_number=None if i % 50 == 0 else f"B{i}",
                             category=cats[i % len(cats)],
                             mfg_date=datetime.date(2025, 1, 1),
                             exp_date=datetime.date(2027 + i % 3, 1 + i % 12, 1),
                             price=D(f"{1 + i % 500}.{i % 100:02d}"), stock_qty=1000 + i % 100,
                             supplier=suppliers[i % 5]))
    Medicine.objects.bulk_create(rows, batch_size=2000)
    ids = list(Medicine.objects.values_list("medicine_id", "price"))
    n_customers = max(1, min(2000, invoices // 50))
    customers = Customer.objects.bulk_create(
        [Customer(name=f"Customer {i}", phone_number=f"98{i:08d}") for i in range(n_customers)])
    methods = ["cash", "card", "esewa"]
    at = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    done = 0
    while done < invoices:
        n = min(5000, invoices - done)
        invs = []
        for k in range(n):
            i = done + k
            invs.append(Invoice(customer=customers[i % n_customers] if i % 3 else None,
                                customer_name=f"Customer {i % n_customers}", phone_number="",
                                payment_method=methods[i % 3], amount_received=None,
                                return_amount=None, subtotal=D(0), discount=D(0), total=D(0),
                                billed_by=["admin", "ram", "sita", ""][i % 4]))
        invs = Invoice.objects.bulk_create(invs)
        items = []
        for inv in invs:
            subtotal = D(0)
            for _ in range(3):
                mid, price = ids[rnd.randrange(len(ids))]
                q = 1 + rnd.randrange(5)
                items.append(InvoiceItem(invoice=inv, medicine_id=mid, quantity=q, price=price,
                                         total=price * q))
                subtotal += price * q
            inv.subtotal = inv.total = subtotal
            if inv.payment_method == "cash":
                inv.amount_received = subtotal
                inv.return_amount = D(0)
        InvoiceItem.objects.bulk_create(items, batch_size=5000)
        Invoice.objects.bulk_update(invs, ["subtotal", "total", "amount_received",
                                           "return_amount"], batch_size=5000)
        done += n
    from django.db import connection as c
    with c.cursor() as cur:
        # Dates spread over two years, as a real history is.
        if c.vendor == "postgresql":
            cur.execute("UPDATE billing_invoice SET created_at = %s + (invoice_id * interval '10 minutes')",
                        [at])
        else:
            cur.execute("UPDATE billing_invoice SET created_at = datetime('2024-01-01', '+' || (invoice_id * 10) || ' minutes')")


def main():
    kind, target = sys.argv[1], sys.argv[2]
    size = None
    if "--bench" in sys.argv:
        i = sys.argv.index("--bench")
        size = tuple(int(x) for x in sys.argv[i + 1:])
    if kind == "sqlite":
        if os.path.exists(target):
            os.remove(target)
        configure({"ENGINE": "django.db.backends.sqlite3", "NAME": target})
    elif kind == "postgres":
        configure(postgres_database(target))
    elif kind == "tenants":
        configure_tenants(postgres_database(target))
        made = tenants(size)
        print(json.dumps({"kind": kind, "target": target, "schemas": made}))
        return
    elif kind == "dumpdata":
        work = tempfile.mkdtemp()
        configure({"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(work, "db.sqlite3")})
    else:
        sys.exit(f"unknown kind {kind}")
    if size:
        bench(*size)
    else:
        gone = small()
        quirks(gone.customer_id)
    if kind == "dumpdata":
        import io
        from django.core.management import call_command

        out = io.StringIO()
        call_command("dumpdata", "pharmacy", "supplier", "medicine", "billing", indent=2, stdout=out)
        # As Windows PowerShell writes `manage.py dumpdata > file`: UTF-16 LE, BOM, CRLF.
        with open(target, "wb") as f:
            f.write(out.getvalue().replace("\n", "\r\n").encode("utf-16"))
    print(json.dumps({"kind": kind, "target": target, "bench": size}))


if __name__ == "__main__":
    main()
