"""Medicines: one row is one batch."""
from django.db import models

CATEGORIES = [(c, c) for c in ("tablet/capsule", "liquid", "patch", "dose form", "ointment",
                                "syrup", "injection", "cream")]


class Medicine(models.Model):
    medicine_id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=100)
    brand_name = models.CharField(max_length=100)
    batch_number = models.CharField(max_length=50, null=True, blank=True)
    category = models.CharField(max_length=20, choices=CATEGORIES)
    mfg_date = models.DateField()
    exp_date = models.DateField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock_qty = models.PositiveIntegerField()
    supplier = models.ForeignKey("supplier.Supplier", on_delete=models.CASCADE)
