"""Suppliers and their invoices (goods receipts)."""
from django.db import models


class Supplier(models.Model):
    name = models.CharField(max_length=100)
    contact = models.CharField(max_length=20)
    address = models.TextField(blank=True)
    email = models.EmailField(null=True, blank=True)
    pan_number = models.CharField(max_length=50, null=True, blank=True)


class SupplierInvoice(models.Model):
    invoice_number = models.CharField(max_length=100, unique=True)
    date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE)
    total_amount = models.DecimalField(max_digits=12, decimal_places=2)
    received_by = models.CharField(max_length=150, null=True, blank=True)


class SupplierInvoiceItem(models.Model):
    invoice = models.ForeignKey(SupplierInvoice, on_delete=models.CASCADE, related_name="items")
    medicine_name = models.CharField(max_length=100)
    brand_name = models.CharField(max_length=100)
    batch_number = models.CharField(max_length=100)
    category = models.CharField(max_length=100)
    mfg_date = models.DateField()
    exp_date = models.DateField()
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
